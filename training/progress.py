"""ProgressLog: one compact line every few training steps, for logs and terminals without a progress bar.

    blendkit train fit --config pairranker/minilm_cpu --trainer.enable_progress_bar false \\
        --trainer.callbacks+=blendkit.training.progress.ProgressLog

prints, on rank 0,

    [blendkit] step 30/120 (25%)  loss 0.6412  1.6 steps/s  elapsed 0:00:19  ETA 0:00:56

``every_n_steps`` defaults to about one line per 5 % of the run. The loss is the mean of the training
losses since the previous line; the ETA extrapolates the steps done in this run (validation included).
"""

from __future__ import annotations

import math
import time
from datetime import timedelta

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info


class ProgressLog(pl.Callback):
    def __init__(self, every_n_steps: int | None = None):
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"ProgressLog every_n_steps must be >= 1 (or null for about 5 % of the run), "
                             f"got {every_n_steps}.")
        self.every_n_steps = every_n_steps
        self.total: int | None = None
        self.interval = 1
        self.start_time = 0.0
        self.start_step = 0
        self.last_step = 0
        self.losses: list[float] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        total = trainer.estimated_stepping_batches
        self.total = int(total) if math.isfinite(total) else None
        self.interval = self.every_n_steps or max(1, (self.total or 400) // 20)
        self.start_time, self.start_step = time.monotonic(), trainer.global_step
        self.last_step = trainer.global_step
        self.losses = []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            self.losses.append(float(loss.detach()))
        step = trainer.global_step
        if step != self.last_step and (step % self.interval == 0 or step == self.total):
            self.last_step = step
            rank_zero_info(self.line(step))
            self.losses = []

    def line(self, step: int) -> str:
        """The progress line at optimizer step ``step``."""
        elapsed = time.monotonic() - self.start_time
        rate = (step - self.start_step) / elapsed if elapsed > 0 else 0.0
        done = f"step {step}/{self.total} ({100 * step / self.total:.0f}%)" if self.total else f"step {step}"
        parts = [f"[blendkit] {done}"]
        if self.losses:
            parts.append(f"loss {sum(self.losses) / len(self.losses):.4f}")
        parts += [f"{rate:.2f} steps/s", f"elapsed {_clock(elapsed)}"]
        if self.total and rate > 0:
            parts.append(f"ETA {_clock((self.total - step) / rate)}")
        return "  ".join(parts)


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))

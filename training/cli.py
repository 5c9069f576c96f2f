"""Lightning's CLI over blendkit's components: every training knob lives in a YAML recipe under configs/.

    blendkit train fit --config pairranker/minilm_cpu            # a packaged recipe, by name
    blendkit train fit --config my_recipe.yaml --trainer.max_epochs 3
    blendkit train fit --config pairranker/minilm_cpu --ckpt_path last     # resume

``trainer.precision`` left unset (``null``) on CPU means: ``bf16-mixed`` where the CPU multiplies bf16
natively (AMX / AVX512-BF16, ``blendkit.core.hardware``), ``32-true`` elsewhere; the choice is logged.
Set it (``--trainer.precision 32-true``) to force one. On other accelerators unset means Lightning's default.
"""

from __future__ import annotations

import os
import sys

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.utilities import rank_zero_info

from ..core.hardware import fast_bf16
from ..core.quiet import quiet_third_party
from ..core.resources import recipe_path
from .deepspeed_guard import guard_checkpoint_folders


class BlendkitCLI(LightningCLI):
    def before_fit(self) -> None:
        # Checkpoints go to <default_root_dir>/checkpoints, one fixed place, so that
        # `--ckpt_path last` finds the previous run's (Lightning's default is a new
        # lightning_logs/version_N folder per run, where "last" finds nothing).
        for callback in self.trainer.checkpoint_callbacks:
            if callback.dirpath is None:
                callback.dirpath = os.path.join(self.trainer.default_root_dir, "checkpoints")

    def instantiate_trainer(self, **kwargs) -> pl.Trainer:
        config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        if config.get("precision") is None:
            chosen = default_precision(config.get("accelerator"))
            if chosen is not None:
                kwargs["precision"] = chosen
                rank_zero_info(f"[blendkit] trainer.precision unset: {chosen} "
                               f"({'this CPU has native bf16' if chosen == 'bf16-mixed' else 'no native bf16 here'})")
        trainer = super().instantiate_trainer(**kwargs)
        guard_checkpoint_folders(trainer.strategy)   # DeepSpeed unpickles resumed folders in full: inspect first
        return trainer


def default_precision(accelerator) -> str | None:
    """The precision of a CPU run whose recipe leaves ``trainer.precision`` unset; None: not a CPU run.

    Why bf16-mixed: on a 2-core AMX CPU it trained the PairRanker faster than fp32 on the very same batches
    (+6% to +36% per step across runs of benchmarks/ranker_train_speed.py on a busy shared machine), with step
    losses within 0.001 of fp32's; without native bf16, PyTorch emulates it and fp32 wins.
    """
    on_cpu = accelerator == "cpu" or (accelerator in (None, "auto") and not torch.cuda.is_available()
                                      and not torch.backends.mps.is_available())
    if not on_cpu:
        return None
    return "bf16-mixed" if fast_bf16("cpu") else "32-true"


def train_cli(args: list[str] | None = None, run: bool = True) -> LightningCLI:
    """Run Lightning's CLI on ``args`` (None: ``sys.argv``). ``--config`` may name a packaged recipe."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    quiet_third_party()
    argv = sys.argv
    if args is not None:
        args = [recipe_path(a) if k and args[k - 1] in ("--config", "-c") else
                "--config=" + recipe_path(a[9:]) if a.startswith("--config=") else a for k, a in enumerate(args)]
        sys.argv = sys.argv[:1]   # Lightning warns when given args while sys.argv holds others (the caller's)
    try:
        return BlendkitCLI(pl.LightningModule, pl.LightningDataModule, subclass_mode_model=True,
                           subclass_mode_data=True, save_config_kwargs={"overwrite": True}, args=args, run=run)
    finally:
        sys.argv = argv

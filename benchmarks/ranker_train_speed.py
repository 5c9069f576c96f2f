"""PairRanker training speed on CPU: blendkit's fast settings against a reference fine-tune, in one run.

    flock /tmp/bench.lock python benchmarks/ranker_train_speed.py [--steps 30] [--rows 120]

Every mode trains MiniLM-L6 (``--backbone``) from the same weights on the same training pairs (AlpacaEval-Mix
train rows, ``pairs_per_row`` random pairs each), source 48 / candidates 96 tokens, batches of 16 pairs, the
same learning rates and schedule, for the same number of steps:

  reference:   the plain settings of LLM-Blender's PairRanker fine-tune: fp32 eager, uniformly shuffled
               batches of the row-ordered pairs, one pair per sequence, backbone dropout 0.1, nothing frozen,
               torch's default AdamW loop.
  plain:       the same model (dropout 0.1, nothing frozen) with blendkit's fast settings: the precision
               that an unset ``trainer.precision`` resolves to (bf16-mixed on CPUs with native bf16),
               length-grouped batches (``data.batch_order: length``), fused AdamW.
  plain_fp32:  ``plain`` in fp32, on the very same batches: what bf16 alone does to speed and to the loss.
  cpu_recipe:  the model of configs/pairranker/minilm_cpu.yaml (dropout 0, 3 frozen layers), fast settings.

Prints JSON: pairs/s of each mode (first step excluded: warm-up), the ratios to ``reference``, the share of
padding tokens, and the loss curves as mean loss per window of ``--window`` timed steps (step 0 left out).
``plain`` and ``reference`` see the same pairs in a different order, so their curves agree window by window
only up to batch noise; ``plain`` and ``plain_fp32`` see identical batches, so their step losses differ only
by bf16 rounding.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from types import SimpleNamespace

import torch
from common import SHARED

MODES = ("reference", "plain", "plain_fp32", "cpu_recipe")


def build_module(args, dropout: float | None, frozen: int):
    """A PairRankerModule as the CLI builds it (same seed, hence the same head weights in every mode)."""
    from blendkit.pairranker.module import PairRankerModule

    torch.manual_seed(0)
    return PairRankerModule(backbone=args.backbone, source_max_length=args.source_max_length,
                            candidate_max_length=args.candidate_max_length, encoder_dropout=dropout,
                            freeze_layers=frozen, learning_rate=args.learning_rate,
                            head_learning_rate=args.head_learning_rate, use_model_prior=False)


def train_loader(module, rows, batch_order: str, args):
    """The training DataLoader of epoch 0, from the real PairRankerDataModule (no Trainer: it is given the two
    things it reads from one, the module's pair encoder and the epoch)."""
    from blendkit.pairranker.datamodule import PairRankerDataModule

    data = PairRankerDataModule(pair_strategy="random", pairs_per_row=args.pairs_per_row,
                                batch_size=args.batch_size, batch_order=batch_order, seed=0)
    data.trainer = SimpleNamespace(lightning_module=module, current_epoch=0)
    data.train_data = rows
    return data.train_dataloader()


class Run:
    """One mode's training, a step at a time, as Lightning takes a step (autocast around the forward pass only).

    The modes take their steps in turn (step k of every mode, then step k + 1): this machine is shared, and a
    load that comes and goes then slows every mode alike instead of the one that happened to be running. Each
    mode keeps its own random state, so its dropout masks do not depend on the others.
    """

    def __init__(self, module, loader, steps: int, precision: str, fused: bool):
        from blendkit.training.optim import adamw_with_warmup

        self.model, self.batches, self.precision = module.model, iter(loader), precision
        self.model.train()
        opt = adamw_with_warmup(module.param_groups(), 0.01, 0.1, steps + 1, fused=fused)
        self.optimizer, self.scheduler = opt["optimizer"], opt["lr_scheduler"]["scheduler"]
        self.rng = torch.Generator().manual_seed(1).get_state()   # the same dropout masks where the shapes agree
        self.seconds, self.losses, self.real, self.padded = 0.0, [], 0, 0

    def step(self, timed: bool) -> None:
        torch.set_rng_state(self.rng)
        start = time.perf_counter()
        batch = next(self.batches)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16-mixed"):
            loss = self.model(**batch).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.scheduler.step()
        if timed:
            self.seconds += time.perf_counter() - start
        self.rng = torch.get_rng_state()
        self.losses.append(loss.item())
        self.real += int(batch["attention_mask"].sum())
        self.padded += batch["attention_mask"].numel()


def windows(losses: list[float], size: int) -> list[float]:
    return [round(sum(chunk) / len(chunk), 4) for chunk in (losses[k:k + size] for k in range(0, len(losses), size))]


def main(argv: list[str]) -> None:
    print(json.dumps(measure(argv)))


def measure(argv: list[str]) -> dict:
    """The report of one run with command-line options ``argv`` (``ranker_speed.py`` calls it too)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.path.join(SHARED, "train.jsonl.gz"))
    parser.add_argument("--backbone", default="minilm", help="an encoder (alias, Hub id or folder)")
    parser.add_argument("--rows", type=int, default=120, help="training rows to draw pairs from")
    parser.add_argument("--pairs-per-row", type=int, default=12)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per mode (one more warms up)")
    parser.add_argument("--window", type=int, default=10, help="steps per mean of the loss curve")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--source-max-length", type=int, default=48)
    parser.add_argument("--candidate-max-length", type=int, default=96)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--head-learning-rate", type=float, default=1e-3)
    parser.add_argument("--freeze-layers", type=int, default=3, help="frozen layers of cpu_recipe (mpnet_cpu: 8)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, from {MODES}")
    args = parser.parse_args(argv)
    modes = args.modes.split(",")
    if not set(modes) <= set(MODES) or "reference" not in modes:
        parser.error(f"--modes: choose from {MODES}, reference included (the ratios are against it)")

    from transformers.utils import logging as transformers_logging

    from blendkit.core.hardware import fast_bf16
    from blendkit.data import load_mixinstruct
    from blendkit.training.cli import default_precision

    transformers_logging.disable_progress_bar()   # four "Loading weights" bars would bury the JSON

    fast_precision = default_precision("cpu")
    settings = {  # mode: (backbone dropout (None: MiniLM's 0.1), frozen layers, precision, batch order, fused AdamW)
        "reference": (None, 0, "32-true", "random", False),
        "plain": (None, 0, fast_precision, "length", True),
        "plain_fp32": (None, 0, "32-true", "length", True),
        "cpu_recipe": (0.0, args.freeze_layers, fast_precision, "length", True),
    }
    data = load_mixinstruct(args.data, required_scores=["judge"], limit=args.rows)
    rows, runs = None, {}
    for name in modes:
        dropout, frozen, precision, order, fused = settings[name]
        module = build_module(args, dropout, frozen)
        if rows is None:   # the same tokenizer in every mode: tokenize once
            rows = _prepare(module, data)
        loader = train_loader(module, rows, order, args)
        if len(loader) < args.steps + 1:
            parser.error(f"--rows {args.rows} gives {len(loader)} batches, fewer than --steps + 1")
        runs[name] = Run(module, loader, args.steps, precision, fused)
    for step in range(args.steps + 1):   # step 0 warms up, untimed
        for run in runs.values():
            run.step(timed=step > 0)
    report, losses = {}, {}
    for name, run in runs.items():
        dropout, frozen, precision, order, fused = settings[name]
        losses[name] = run.losses
        report[name] = {"pairs_per_s": round(args.steps * args.batch_size / run.seconds, 2),
                        "seconds": round(run.seconds, 1), "padding_pct": round(100 * (1 - run.real / run.padded), 1),
                        "precision": precision, "batch_order": order, "adamw": "fused" if fused else "default",
                        "dropout": run.model.config.encoder.hidden_dropout_prob, "frozen": frozen,
                        "loss_windows": windows(run.losses[1:], args.window)}
    reference = report["reference"]["pairs_per_s"]
    out = {"backbone": args.backbone, "threads": torch.get_num_threads(), "cpu_fast_bf16": fast_bf16("cpu"),
           "rows": args.rows,
           "lengths": [args.source_max_length, args.candidate_max_length], "batch_size": args.batch_size,
           "steps": args.steps, "window": args.window, "modes": report,
           "ratio_to_reference": {name: round(report[name]["pairs_per_s"] / reference, 2) for name in modes}}
    if "plain" in modes:
        out["loss_mean"] = {name: round(sum(v) / len(v), 4) for name, v in losses.items()}
    if {"plain", "plain_fp32"} <= set(modes):   # identical batches: the step losses differ by rounding only
        out["plain_bf16_vs_fp32_max_step_loss_diff"] = round(
            max(abs(a - b) for a, b in zip(losses["plain"], losses["plain_fp32"])), 6)
    return out


def _prepare(module, data):
    """Tokenize the rows once, as PairRankerDataModule.prepare does."""
    from blendkit.pairranker.datamodule import PairRankerDataModule

    data_module = PairRankerDataModule(seed=0)
    data_module.trainer = SimpleNamespace(lightning_module=module, current_epoch=0)
    return data_module.prepare(data)


if __name__ == "__main__":
    main(sys.argv[1:])

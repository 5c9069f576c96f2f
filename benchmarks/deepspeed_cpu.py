"""DeepSpeed ZeRO-2 (bf16-mixed) vs. plain fp32 training of the CPU ranker recipe, on CPU, in one run.

    python benchmarks/deepspeed_cpu.py [--steps 12] [--warmup 2]

Trains `configs/pairranker/minilm_cpu.yaml` as it is (MiniLM-L6, 48-token instruction, 96 per candidate,
batch 16, 3 frozen layers) on the embedded sample for STEPS optimizer steps, twice, each in a fresh
process: with the recipe's `precision: 32-true` on one device, and with ZeRO stage 2 + `bf16-mixed`
through the test-only `CPUDeepSpeedStrategy` (tests/deepspeed_cpu.py). Prints JSON: training pairs/s over
the steps after WARMUP, peak RSS of each process (getrusage ru_maxrss) at the last training step and after
the final checkpoint (`last.ckpt`, a file or a DeepSpeed folder) is written, and the ratios of the two runs.

DeepSpeed on CPU is there to exercise the code path (checkpoints, export) without a GPU; these figures
say what that costs on this machine, nothing about GPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from common import ROOT

RECIPE = os.path.join(ROOT, "configs", "pairranker", "minilm_cpu.yaml")
BATCH_SIZE = 16  # the recipe's


def child(mode: str, steps: int, warmup: int, root: str) -> dict:
    """One training run in this process; returns its figures."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from pytorch_lightning import Callback

    from blendkit.training.cli import train_cli as cli

    class StepTimes(Callback):
        def __init__(self) -> None:
            self.ends: list[float] = []

        def on_train_batch_end(self, *args) -> None:
            self.ends.append(time.perf_counter())
            self.rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # peak so far: training only

    args = ["--config", RECIPE, "--trainer.max_steps", str(steps), "--trainer.max_epochs", "-1",
            "--trainer.logger", "false", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary",
            "false", "--trainer.default_root_dir", root, "--data.val_file", "null", "--model.export_dir", "null",
            "--data.batch_size", str(BATCH_SIZE)]
    if mode == "zero2_bf16":
        import deepspeed_cpu  # noqa: F401  (sets DS_ACCELERATOR=cpu; the strategy resolves by class path)

        args += ["--trainer.strategy", "deepspeed_cpu.CPUDeepSpeedStrategy", "--trainer.strategy.stage", "2",
                 "--trainer.precision", "bf16-mixed"]
    run = cli(args, run=False)  # builds model, data and trainer from the recipe; fit below, timed
    timer = StepTimes()
    run.trainer.callbacks.append(timer)
    run.trainer.fit(run.model, datamodule=run.datamodule)
    if len(timer.ends) != steps:
        raise RuntimeError(f"{mode}: expected {steps} steps, got {len(timer.ends)}")
    seconds = timer.ends[-1] - timer.ends[warmup - 1]
    import torch

    trainable = sum(p.numel() for p in run.model.model.parameters() if p.requires_grad)
    return {"torch_threads": torch.get_num_threads(), "pairs_per_s": round((steps - warmup) * BATCH_SIZE / seconds, 2),
            "s_per_step": round(seconds / (steps - warmup), 3),
            "peak_rss_mib_training": round(timer.rss_kib / 1024, 1),
            "peak_rss_mib_with_checkpoint": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "trainable_params": trainable}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2, help="steps left out of the timing")
    parser.add_argument("--child", choices=["fp32", "zero2_bf16"], help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 0 < args.warmup < args.steps:
        parser.error("need 0 < --warmup < --steps")
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args.steps, args.warmup, args.root)), flush=True)
        return

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("fp32", "zero2_bf16"):
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", mode, "--steps",
                                   str(args.steps), "--warmup", str(args.warmup), "--root", os.path.join(tmp, mode)],
                                  capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
            lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
            if proc.returncode or not lines:
                sys.exit(f"{mode} run failed:\n{proc.stderr[-3000:]}")
            results[mode] = json.loads(lines[-1][len("RESULT "):])
    plain, zero = results["fp32"], results["zero2_bf16"]
    print(json.dumps({
        "recipe": os.path.relpath(RECIPE, ROOT), "steps": args.steps, "timed_steps": args.steps - args.warmup,
        "batch_size": BATCH_SIZE,
        "fp32_32-true": plain, "zero2_bf16-mixed": zero,
        "speed_ratio_zero2_vs_fp32": round(zero["pairs_per_s"] / plain["pairs_per_s"], 3),
        "peak_rss_ratio_zero2_vs_fp32": round(zero["peak_rss_mib_training"] / plain["peak_rss_mib_training"], 3),
    }, indent=2))


if __name__ == "__main__":
    main()

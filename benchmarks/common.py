"""What the quality benchmarks share: where the shared data lives, and training a recipe on a time budget."""

from __future__ import annotations

import argparse
import os
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data", "alpacaeval_mix")


def add_common_args(parser, recipe: str, minutes: float, epochs: int) -> None:
    """The options both quality benchmarks take: data, output, recipe and training budget."""
    parser.add_argument("--train", default=os.path.join(SHARED, "train.jsonl.gz"))
    parser.add_argument("--eval", default=os.path.join(SHARED, "val.jsonl.gz"))
    parser.add_argument("--output", required=True)
    parser.add_argument("--pool", default=os.path.join(SHARED, "pool12.txt"), help="EVAL candidate pool, or 'all'")
    parser.add_argument("--recipe", default=os.path.join(ROOT, "configs", recipe))
    parser.add_argument("--train-minutes", type=float, default=minutes, help="training time budget (max_time)")
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N rows (smoke tests)")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more LightningCLI overrides")


def train_recipe(recipe: str, train_file: str, output: str, minutes: float, epochs: int,
                 extra: list[str]) -> tuple[str, float]:
    """Fit ``recipe`` on ``train_file`` for at most ``epochs`` epochs and ``minutes`` minutes (no
    validation); returns (exported model folder, seconds spent)."""
    from blendkit.training.cli import train_cli as cli

    model_dir = os.path.join(output, "model")
    whole, seconds = int(minutes), int(round((minutes % 1) * 60))
    start = time.time()
    cli(["fit", "--config", recipe, "--data.train_file", train_file, "--data.val_file", "null",
         "--data.train_pool", "null", "--trainer.max_epochs", str(epochs),
         "--trainer.max_time", f"00:00:{whole:02d}:{seconds:02d}", "--trainer.enable_progress_bar", "false",
         "--trainer.default_root_dir", os.path.join(output, "train"), "--model.export_dir", model_dir, *extra])
    return model_dir, time.time() - start


def scored_rows(path: str, pool: str | None, score_key: str, limit: int | None = None):
    """(LoadResult, rows) of ``path`` restricted to ``pool``, every candidate scored by ``score_key``;
    ``rows`` are the candidate lists that ``baselines.py`` takes."""
    from blendkit.data import load_mixinstruct

    data = load_mixinstruct(path, pool=pool, required_scores=[score_key], limit=limit)
    return data, list(data.dataset["candidates"])


def write_outputs(output: str, predictions: list[dict] | None, report: dict) -> None:
    """DIR/predictions.jsonl (unless ``predictions`` is None) and DIR/metrics.json (atomically), then the
    report as one JSON line."""
    import json

    from blendkit.core.atomic import atomic_open

    if predictions is not None:
        report["predictions"] = os.path.join(output, "predictions.jsonl")
        with atomic_open(report["predictions"]) as f:
            for row in predictions:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    with atomic_open(os.path.join(output, "metrics.json")) as f:
        json.dump(report, f, indent=2)
    print(json.dumps(report))

"""``blendkit export``: a training checkpoint (or model folder) -> a Hub-ready folder; optionally push it."""

from __future__ import annotations

import argparse
import json
import os

from ..hub import export_checkpoint, push_to_hub


def add_parser(sub) -> None:
    export = sub.add_parser("export", help="Lightning checkpoint -> Hugging Face folder (safetensors, tokenizer, card)")
    export.add_argument("--checkpoint", required=True, help="a .ckpt file or DeepSpeed folder from training, "
                        "or a saved model folder")
    export.add_argument("--output", required=True, help="directory to write (replaced atomically)")
    export.add_argument("--adapter-only", action="store_true", help="LoRA runs: save only the adapter")
    export.add_argument("--push-to-hub", default=None, metavar="REPO_ID", help="also upload the folder to the Hub")
    export.add_argument("--private", action="store_true", help="create the Hub repo as private")
    export.add_argument("--base-model", default=None, help="model card: the backbone's Hub id (default: guessed)")
    export.add_argument("--dataset", action="append", default=[], help="model card: training data (repeatable)")
    export.add_argument("--metrics", default=None, help="model card: a metrics.json (e.g. from benchmarks/)")
    export.add_argument("--license", default="apache-2.0")
    export.set_defaults(run=run)


def run(args: argparse.Namespace) -> dict:
    card = {"repo_id": args.push_to_hub, "base_model": args.base_model, "datasets": args.dataset,
            "metrics": _read_metrics(args.metrics) if args.metrics else None, "license": args.license}
    path = export_checkpoint(args.checkpoint, args.output, merge_lora=not args.adapter_only, card=card)
    result = {"exported": os.path.abspath(path), "model_card": os.path.join(os.path.abspath(path), "README.md")}
    if args.push_to_hub:
        result["pushed"] = push_to_hub(path, args.push_to_hub, private=args.private)
    return result


def _read_metrics(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        metrics = json.load(f)
    metrics = metrics.get("metrics", metrics)
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}

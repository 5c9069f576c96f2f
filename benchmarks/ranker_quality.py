"""Train the CPU default ranker recipe on TRAIN, rank EVAL's pool, print quality as JSON.

    python benchmarks/ranker_quality.py \
        --train ../shared/data/alpacaeval_mix/train.jsonl.gz \
        --eval  ../shared/data/alpacaeval_mix/val.jsonl.gz --output runs/ranker_quality

Writes DIR/model (the trained ranker, Hub format), DIR/predictions.jsonl (one row per EVAL row:
id + candidates with rank and ranker_score) and DIR/metrics.json; prints
{"top1": mean judge x100 of the picks, "pair_acc": %, "spearman": ..., ...} with the baselines
measured on the same rows (oracle, longest answer, random, best single model).
Training trains on every candidate of TRAIN (pool "all"); evaluation uses --pool (default pool12).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data", "alpacaeval_mix")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", default=os.path.join(SHARED, "train.jsonl.gz"))
    parser.add_argument("--eval", default=os.path.join(SHARED, "val.jsonl.gz"))
    parser.add_argument("--output", required=True)
    parser.add_argument("--pool", default=os.path.join(SHARED, "pool12.txt"), help="file of model names, or 'all'")
    parser.add_argument("--recipe", default=os.path.join(ROOT, "configs", "pairranker", "minilm_cpu.yaml"))
    parser.add_argument("--train-minutes", type=float, default=25.0, help="training time budget (trainer.max_time)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--aggregation", default="max_logits")
    parser.add_argument("--score-key", default="judge")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N rows (smoke tests)")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more LightningCLI overrides")
    args = parser.parse_args(argv)

    sys.path.insert(0, ROOT)
    from train import cli

    from blendkit.atomic import atomic_open
    from blendkit.data import ScoreSpec, load_mixinstruct
    from blendkit.pairranker import Ranker
    from blendkit.pairranker.batch import baselines, longer_is_better_accuracy, rank_dataset

    os.makedirs(args.output, exist_ok=True)
    model_dir = os.path.join(args.output, "model")
    minutes = int(args.train_minutes)
    seconds = int(round((args.train_minutes - minutes) * 60))
    t0 = time.time()
    cli(["fit", "--config", args.recipe, "--data.train_file", args.train, "--data.val_file", "null",
         "--data.train_pool", "null", "--trainer.max_epochs", str(args.epochs),
         "--trainer.max_time", f"00:00:{minutes:02d}:{seconds:02d}", "--trainer.enable_progress_bar", "false",
         "--trainer.default_root_dir", os.path.join(args.output, "train"), "--model.export_dir", model_dir,
         *args.extra])
    train_seconds = time.time() - t0

    eval_data = load_mixinstruct(args.eval, pool=args.pool, required_scores=[args.score_key], limit=args.limit)
    ranker = Ranker.from_pretrained(model_dir)
    t1 = time.time()
    records, metrics, _ = rank_dataset(ranker, eval_data, args.aggregation, ScoreSpec((args.score_key,)))
    rank_seconds = time.time() - t1
    out_path = os.path.join(args.output, "predictions.jsonl")
    with atomic_open(out_path) as f:
        for record in records:
            f.write(json.dumps({"id": record["id"], "candidates": [
                {"model": c["model"], "rank": c["rank"], "ranker_score": c["ranker_score"]}
                for c in record["candidates"]]}) + "\n")

    report = {**metrics, "aggregation": args.aggregation, "eval_rows": len(eval_data),
              "baselines": {**baselines(eval_data, args.score_key),
                            "longer_is_better_pair_acc": longer_is_better_accuracy(eval_data, args.score_key)},
              "train_seconds": round(train_seconds), "rank_seconds": round(rank_seconds),
              "predictions": out_path, "model": model_dir}
    with atomic_open(os.path.join(args.output, "metrics.json")) as f:
        json.dump(report, f, indent=2)
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1:])

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
import os
import sys
import time

from common import add_common_args, train_recipe, write_outputs


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, "pairranker/minilm_cpu.yaml", minutes=26.0, epochs=3)
    parser.add_argument("--aggregation", default="max_logits")
    parser.add_argument("--score-key", default="judge")
    args = parser.parse_args(argv)

    from blendkit.data import ScoreSpec, load_mixinstruct
    from blendkit.pairranker import Ranker
    from blendkit.pairranker.batch import baselines, longer_is_better_accuracy, rank_dataset

    os.makedirs(args.output, exist_ok=True)
    model_dir, train_seconds = train_recipe(args.recipe, args.train, args.output, args.train_minutes, args.epochs,
                                            args.extra)

    eval_data = load_mixinstruct(args.eval, pool=args.pool, required_scores=[args.score_key], limit=args.limit)
    ranker = Ranker.from_pretrained(model_dir)
    t1 = time.time()
    records, metrics, _ = rank_dataset(ranker, eval_data, args.aggregation, ScoreSpec((args.score_key,)))
    rank_seconds = time.time() - t1
    predictions = [{"id": r["id"], "candidates": [
        {"model": c["model"], "rank": c["rank"], "ranker_score": c["ranker_score"]} for c in r["candidates"]]}
        for r in records]
    report = {**metrics, "aggregation": args.aggregation, "eval_rows": len(eval_data),
              "baselines": {**baselines(eval_data, args.score_key),
                            "longer_is_better_pair_acc": longer_is_better_accuracy(eval_data, args.score_key)},
              "train_seconds": round(train_seconds), "rank_seconds": round(rank_seconds), "model": model_dir}
    write_outputs(args.output, predictions, report)

if __name__ == "__main__":
    main(sys.argv[1:])

"""Train the CPU default fuser recipe on TRAIN, fuse EVAL's rows, print quality as JSON.

    python benchmarks/fuser_quality.py \
        --train ../shared/data/alpacaeval_mix/train.jsonl.gz \
        --eval  ../shared/data/alpacaeval_mix/val.jsonl.gz --output runs/fuser_quality [--ranker DIR]

Writes DIR/model (the trained fuser), DIR/predictions.jsonl (id, fused, fused_from, selected = the
top-1 candidate's text) and DIR/metrics.json; prints ROUGE-L, BLEU and BERTScore (MiniLM, F1) of the
fused answer and of the top-1 candidate, both against the reference answer, and their difference.
Which candidates are fused: the top-K by --ranker when given, else the top-K by the judge score
(the oracle selection LLM-Blender trains with; it is then an upper bound for the selection step).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from common import add_common_args, train_recipe, write_outputs


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, "genfuser/minilm_cpu.yaml", minutes=25.0, epochs=6)
    parser.add_argument("--ranker", default=None, help="rank EVAL's candidates with this ranker (default: oracle)")
    args = parser.parse_args(argv)

    from blendkit.data import ScoreSpec, load_mixinstruct
    from blendkit.genfuser import Fuser
    from blendkit.genfuser.batch import fuse_dataset
    from blendkit.genfuser.metrics import FusionMetrics

    os.makedirs(args.output, exist_ok=True)
    model_dir, train_seconds = train_recipe(args.recipe, args.train, args.output, args.train_minutes, args.epochs,
                                            args.extra)

    data = load_mixinstruct(args.eval, pool=args.pool, required_scores=["judge"], min_candidates=1,
                            require_output=True, limit=args.limit)
    fuser = Fuser.from_pretrained(model_dir)
    ranker = None
    if args.ranker:
        from blendkit.pairranker import Ranker

        ranker = Ranker.from_pretrained(args.ranker)
    else:  # oracle selection: rank by the judge score
        spec = ScoreSpec(("judge",))

        def with_oracle_ranks(row):
            scores = spec.combine(row["candidates"])
            order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
            for rank, i in enumerate(order, start=1):
                row["candidates"][i]["rank"] = rank
            return row

        data.dataset = data.dataset.map(with_oracle_ranks)
    t1 = time.time()
    records, metrics = fuse_dataset(fuser, data, ranker=ranker, metrics=FusionMetrics("minilm"))
    fuse_seconds = time.time() - t1
    predictions = [{"id": r["id"], "fused": r["fused"], "fused_from": r["fused_from"],
                    "selected": r["selected"]["text"]} for r in records]
    report = {**metrics, "selection": "ranker" if ranker else "oracle (judge)", "eval_rows": len(records),
              "train_seconds": round(train_seconds), "fuse_seconds": round(fuse_seconds), "model": model_dir}
    write_outputs(args.output, predictions, report)

if __name__ == "__main__":
    main(sys.argv[1:])

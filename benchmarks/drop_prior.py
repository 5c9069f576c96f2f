"""The text-only part of a model-aware ranker: its rankings with the learned model prior taken out.

    python benchmarks/drop_prior.py runs/ranker_quality       # writes runs/ranker_quality/predictions_text_only.jsonl
    python benchmarks/compare_rankers.py runs/ranker_quality/predictions_text_only.jsonl --against best_single

With ``max_logits`` the prior adds the same amount to every comparison a candidate takes part in: its
aggregated score is ``text_score + N·offset(model) − Σ offsets`` over the row's N candidates. So the
text-only ranking follows from the saved scores and offsets, without ranking the rows again.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a ranker_quality.py output folder (model/ and predictions.jsonl)")
    args = parser.parse_args(argv)

    from blendkit.core.atomic import atomic_open
    from blendkit.pairranker import PairRankerModel
    from blendkit.pairranker.aggregation import ranks_from_scores

    model = PairRankerModel.from_pretrained(os.path.join(args.run, "model"))
    if model.model_prior is None:
        raise SystemExit(f"{args.run}/model has no model prior: its rankings are text-only already")
    offsets = dict(zip(model.config.model_names, model.model_prior.offsets.tolist()))
    output = os.path.join(args.run, "predictions_text_only.jsonl")
    with open(os.path.join(args.run, "predictions.jsonl"), encoding="utf-8") as f, atomic_open(output) as out:
        for line in f:
            row = json.loads(line)
            n = len(row["candidates"])
            scores = [c["ranker_score"] - n * offsets.get(c["model"], 0.0) for c in row["candidates"]]
            for cand, score, rank in zip(row["candidates"], scores, ranks_from_scores(scores)):
                cand["ranker_score"], cand["rank"] = score, rank
            out.write(json.dumps(row) + "\n")
    print(json.dumps({"written": output, "models_with_offsets": len(offsets)}))


if __name__ == "__main__":
    main(sys.argv[1:])

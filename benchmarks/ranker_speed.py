"""PairRanker speed on this machine, as ratios measured in one run (absolute times are noisy here).

    python benchmarks/ranker_speed.py [--model runs/ranker_quality/model] [--rows 20]

Prints JSON with:
  train:     training pairs/s of the CPU recipe (dropout 0, 3 frozen layers) vs. a plain fine-tune
             (backbone dropout, nothing frozen), same lengths and batch size;
  inference: comparisons/s of the full matrix with length bucketing vs. without (input order);
  knockout:  forward passes, time and top-1 quality of knockout vs. the full matrix (max_logits)
             on the val pool; top-1 figures need a trained --model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
from common import SHARED


def train_pairs_per_second(model, encoder, rows, steps: int, batch_size: int) -> float:
    from blendkit.data import build_pairs

    pairs = [(r, i, j, label) for r, row in enumerate(rows)
             for i, j, label in build_pairs(torch.arange(len(row.candidates)).double().numpy(), "random", 4)]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    model.train()
    timed = 0.0
    for step in range(steps + 1):  # step 0 warms up
        chunk = pairs[(step * batch_size) % len(pairs):][:batch_size]
        batch = encoder.collate([encoder.pair(rows[r], i, j) for r, i, j, _ in chunk], [lab for *_, lab in chunk])
        start = time.perf_counter()
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step:
            timed += time.perf_counter() - start
    return steps * batch_size / timed


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a trained ranker folder (for knockout quality)")
    parser.add_argument("--data", default=os.path.join(SHARED, "val.jsonl.gz"))
    parser.add_argument("--pool", default=os.path.join(SHARED, "pool12.txt"))
    parser.add_argument("--rows", type=int, default=20, help="val rows for inference / knockout timing")
    parser.add_argument("--train-steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--source-max-length", type=int, default=48)
    parser.add_argument("--candidate-max-length", type=int, default=96)
    parser.add_argument("--freeze-layers", type=int, default=3)
    args = parser.parse_args(argv)

    from blendkit.core.offline import resolve_model
    from blendkit.data import ScoreSpec, load_mixinstruct, source_text
    from blendkit.pairranker import PairRankerModel, Ranker
    from blendkit.pairranker.batch import rank_dataset
    from blendkit.pairranker.encoding import PairEncoder
    from blendkit.pairranker.module import _freeze_bottom

    torch.manual_seed(0)
    data = load_mixinstruct(args.data, pool=args.pool, required_scores=["judge"], limit=args.rows)
    lengths = {"source_max_length": args.source_max_length, "candidate_max_length": args.candidate_max_length}
    report: dict = {"threads": torch.get_num_threads(), "lengths": lengths, "batch_size": args.batch_size}

    # --- training throughput ------------------------------------------------------------------
    figures = {}
    for name, dropout, frozen in (("plain", None, 0), ("cpu_recipe", 0.0, args.freeze_layers)):
        model, tokenizer = PairRankerModel.from_backbone(resolve_model("minilm"), encoder_dropout=dropout, **lengths)
        if frozen:
            _freeze_bottom(model.encoder, frozen)
        encoder = PairEncoder(tokenizer, model.config)
        ds = data.dataset
        rows = encoder.encode_rows([source_text(q, x) for q, x in zip(ds["instruction"], ds["input"])],
                                   [[c["text"] for c in cands] for cands in ds["candidates"]])
        figures[name] = round(train_pairs_per_second(model, encoder, rows, args.train_steps, args.batch_size), 2)
    report["train_pairs_per_s"] = {**figures, "speedup": round(figures["cpu_recipe"] / figures["plain"], 2)}

    # --- inference: bucketing ------------------------------------------------------------------
    if args.model:
        from transformers import AutoTokenizer

        model, tokenizer = PairRankerModel.from_pretrained(args.model), AutoTokenizer.from_pretrained(args.model)
    model.eval()
    spec = ScoreSpec(("judge",))
    timings = {}
    for bucket in (False, True):
        ranker = Ranker(model, tokenizer, batch_size=64, bucket_by_length=bucket)
        start = time.perf_counter()
        _, metrics, results = rank_dataset(ranker, data, "max_logits", spec, progress=False)
        timings[bucket] = (time.perf_counter() - start, metrics, results)
    comparisons = timings[True][1]["comparisons"]
    report["inference_comparisons_per_s"] = {
        "unbucketed": round(comparisons / timings[False][0], 1), "bucketed": round(comparisons / timings[True][0], 1),
        "speedup": round(timings[False][0] / timings[True][0], 2)}

    # --- knockout vs full matrix ------------------------------------------------------------------
    ranker = Ranker(model, tokenizer, batch_size=64)
    start = time.perf_counter()
    _, ko_metrics, ko_results = rank_dataset(ranker, data, "knockout", spec, progress=False)
    ko_time = time.perf_counter() - start
    full_time, full_metrics, full_results = timings[True]
    report["knockout_vs_full"] = {
        "rows": len(data),
        "forward_passes": {"full": full_metrics["comparisons"], "knockout": ko_metrics["comparisons"]},
        "time_ratio_full_over_knockout": round(full_time / ko_time, 2),
        "same_top1_pick_pct": round(
            100 * sum(a.best == b.best for a, b in zip(full_results, ko_results)) / len(data), 1),
        "top1_full": full_metrics["top1"], "top1_knockout": ko_metrics["top1"],
        "trained_model": bool(args.model)}
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1:])

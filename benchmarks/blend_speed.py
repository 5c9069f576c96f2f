"""Blending pipeline speed: rows/s of `infer.py blend` and the share of time in each stage.

    python benchmarks/blend_speed.py [--rows 8] [--ranker DIR --fuser DIR] [--generate-with smollm2 gemma3-270m]

Runs the real pipeline (Lightning predict loop, shard writer, merge) on the first ROWS rows of the
embedded val sample, pool12 (11-12 candidates a row), full comparison matrix, top-3 fusion, with and
without PackLLM candidates. Without --ranker/--fuser it builds the default MiniLM-based ones untrained
(speed does not depend on the weights) at the CPU recipes' lengths (ranker: 48-token instruction, 96 per
candidate; fuser: 64 + 3 × 96 in, up to 64 out).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from common import ROOT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.path.join(ROOT, "data", "samples", "val.jsonl.gz"))
    parser.add_argument("--pool", default=os.path.join(ROOT, "data", "samples", "pool12.txt"))
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--ranker", default=None)
    parser.add_argument("--fuser", default=None)
    parser.add_argument("--generate-with", nargs="*", default=["smollm2", "gemma3-270m"])
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()

    import torch

    from blendkit.data import load_mixinstruct
    from blendkit.genfuser import Fuser, build_fuser
    from blendkit.packllm import PackLLMGenerator
    from blendkit.pairranker import PairRankerModel, Ranker
    from blendkit.pipeline import BlendModule, BlendOptions, fingerprint, run_blend

    rows = list(load_mixinstruct(args.data, pool=args.pool, limit=args.rows).dataset)
    with tempfile.TemporaryDirectory() as tmp:
        if args.ranker:
            ranker = Ranker.from_pretrained(args.ranker)
        else:
            torch.manual_seed(0)
            model, tokenizer = PairRankerModel.from_backbone("minilm", source_max_length=48, candidate_max_length=96)
            ranker = Ranker(model.eval(), tokenizer)
        if args.fuser:
            fuser = Fuser.from_pretrained(args.fuser)
        else:
            model, tokenizer = build_fuser("minilm", max_candidates=3)
            fuser = Fuser(model.eval(), tokenizer, top_k=3, source_max_length=64, candidate_max_length=96)
        fuse = {"max_new_tokens": 64, "no_repeat_ngram_size": 3}
        runs = {"rank + fuse": None}
        if args.generate_with:
            runs[f"PackLLM ({' + '.join(args.generate_with)}) + rank + fuse"] = \
                PackLLMGenerator.from_pretrained(args.generate_with, weighting="exact")
        report = {"rows": len(rows),
                  "candidates_per_row": round(sum(len(r["candidates"]) for r in rows) / len(rows), 1),
                  "aggregation": "max_logits (full matrix)", "top_k": 3, "fuser_max_new_tokens": 64,
                  "packllm_max_new_tokens": args.max_new_tokens, "threads": torch.get_num_threads(), "runs": {}}
        for label, generator in runs.items():
            module = BlendModule(ranker, fuser, generator,
                                 BlendOptions(top_k=3, generate={"max_new_tokens": args.max_new_tokens}, fuse=fuse))
            out = os.path.join(tmp, f"{len(report['runs'])}.jsonl")
            start = time.time()
            summary = run_blend(module, rows, out, fingerprint(args.data, {"run": label}), batch_size=args.batch_size,
                                accelerator="cpu", progress=False)
            seconds = time.time() - start
            busy = sum(summary["stage_seconds"].values())
            report["runs"][label] = {"seconds": round(seconds, 1), "rows_per_second": round(len(rows) / seconds, 3),
                                     "stage_share": summary["stage_share"],
                                     "overhead_share": round(1 - busy / seconds, 3)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""``blendkit rank``: rank each row's candidates with a PairRanker; metrics when the rows carry scores."""

from __future__ import annotations

import argparse
import os
import sys
import time

from ..core.offline import resolve_model
from ..data import ScoreSpec
from ..pairranker import Ranker
from ..pairranker.aggregation import AGGREGATIONS
from ..pairranker.batch import rank_dataset
from ..pairranker.inference import PRECISIONS
from ..pairranker.plot import plot_ranking
from .inputs import add_data_args, load_input, summary, write_jsonl


def add_parser(sub) -> None:
    rank = sub.add_parser("rank", help="rank each row's candidates with a PairRanker")
    add_data_args(rank, ".jsonl/.jsonl.gz/.json file, saved dataset dir, or Hub id")
    rank.add_argument("--model", required=True, help="ranker directory (save_pretrained / blendkit export)")
    rank.add_argument("--aggregation", default="max_logits", choices=AGGREGATIONS)
    rank.add_argument("--score-keys", nargs="*", default=["judge"],
                      help="score keys for metrics when the data has them (default: judge)")
    rank.add_argument("--batch-size", type=int, default=16, help="pair sequences per forward pass")
    rank.add_argument("--precision", default="auto", choices=PRECISIONS,
                      help="auto: bf16 where the CPU/GPU computes it natively, else fp32; fp32: exact")
    rank.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cpu)")
    rank.add_argument("--compact", action="store_true", help="write only id, model, rank, ranker_score")
    rank.add_argument("--plot", default=None, help="also write a PNG of picks per model and pairwise win rates")
    rank.add_argument("--show", type=int, default=0, help="print the top 3 of the first N rows")
    rank.set_defaults(run=run)


def run(args: argparse.Namespace) -> dict:
    data = load_input(args)
    ranker = Ranker.from_pretrained(resolve_model(args.model), device=args.device, batch_size=args.batch_size,
                                    precision=args.precision)
    spec = ScoreSpec(tuple(args.score_keys)) if args.score_keys else None
    start = time.time()
    records, metrics, results = rank_dataset(ranker, data, args.aggregation, spec, progress=not args.quiet,
                                             return_matrix=bool(args.plot))
    if args.compact:
        records = [{"id": r["id"], "candidates": [{"model": c["model"], "rank": c["rank"],
                                                   "ranker_score": c["ranker_score"]} for c in r["candidates"]]}
                   for r in records]
    write_jsonl(args.output, records)
    result = summary(records, data, time.time() - start, args.output)
    if metrics:
        result["metrics"] = metrics
    if args.show:
        _show_examples(records, args.show)
    if args.plot:
        key = args.score_keys[0] if args.score_keys else None
        result["plot"] = os.path.abspath(plot_ranking(records, results, args.plot, key))
    return result


def _show_examples(records: list[dict], count: int) -> None:
    """Print a few ranked rows for a person to look at (to stderr, so stdout stays JSON)."""
    for record in records[:count]:
        print(f"\n### {record['id']}: {record.get('instruction', '')[:160]!r}", file=sys.stderr)
        for cand in sorted(record["candidates"], key=lambda c: c["rank"])[:3]:
            judged = "".join(f" {k}={v:.3g}" for k, v in (cand.get("scores") or {}).items())   # 1e-4 stays visible
            text = (cand.get("text") or "").replace("\n", " ")[:120]
            print(f"  #{cand['rank']} {cand['model']:<22} ranker={cand['ranker_score']:+.2f}{judged}  {text!r}",
                  file=sys.stderr)
    print(file=sys.stderr)

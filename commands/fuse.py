"""``blendkit fuse``: fuse each row's top-K candidates with a GenFuser; metrics against the references."""

from __future__ import annotations

import argparse
import sys
import time

from ..genfuser import Fuser
from ..genfuser.batch import fuse_dataset
from ..genfuser.metrics import FusionMetrics
from ..pairranker import Ranker
from .inputs import add_data_args, load_input, summary, write_jsonl


def add_parser(sub) -> None:
    fuse = sub.add_parser("fuse", help="fuse each row's top-K candidates with a GenFuser")
    add_data_args(fuse, "MixInstruct rows (e.g. the output of blendkit rank)")
    fuse.add_argument("--model", required=True, help="fuser directory")
    fuse.add_argument("--ranker", default=None, help="rank candidates with this ranker first (else: the file's "
                      "rank fields, else the order given)")
    fuse.add_argument("--top-k", type=int, default=None, help="candidates fused per row (default: the fuser's)")
    fuse.add_argument("--num-beams", type=int, default=1)
    fuse.add_argument("--max-new-tokens", type=int, default=None)
    fuse.add_argument("--no-repeat-ngram-size", type=int, default=3)
    fuse.add_argument("--do-sample", action="store_true")
    fuse.add_argument("--temperature", type=float, default=0.7)
    fuse.add_argument("--top-p", type=float, default=0.9)
    fuse.add_argument("--batch-size", type=int, default=8)
    fuse.add_argument("--device", default=None)
    fuse.add_argument("--bertscore-model", default="minilm", help="encoder for BERTScore ('none' to skip it)")
    fuse.add_argument("--no-metrics", action="store_true", help="do not score against the rows' references")
    fuse.add_argument("--show", type=int, default=0, help="print the first N fused answers")
    fuse.set_defaults(run=run)


def run(args: argparse.Namespace) -> dict:
    data = load_input(args, min_candidates=1)
    fuser = Fuser.from_pretrained(args.model, device=args.device, batch_size=args.batch_size)
    ranker = Ranker.from_pretrained(args.ranker, device=args.device) if args.ranker else None
    generate = {"num_beams": args.num_beams, "max_new_tokens": args.max_new_tokens or fuser.formatter.target_max_length,
                "no_repeat_ngram_size": args.no_repeat_ngram_size}
    if args.do_sample:
        generate.update(do_sample=True, temperature=args.temperature, top_p=args.top_p)
    bertscore = None if args.bertscore_model.lower() == "none" else args.bertscore_model
    metrics = FusionMetrics(bertscore) if not args.no_metrics else None
    start = time.time()
    records, values = fuse_dataset(fuser, data, ranker=ranker, top_k=args.top_k, metrics=metrics,
                                   progress=not args.quiet, **generate)
    write_jsonl(args.output, records)
    result = summary(records, data, time.time() - start, args.output)
    if values:
        result["metrics"] = values
    for record in records[:args.show]:
        print(f"\n### {record['id']}: {record['instruction'][:160]!r}\n  fused from {record['fused_from']}:\n  "
              f"{record['fused'][:400]!r}", file=sys.stderr)
    return result

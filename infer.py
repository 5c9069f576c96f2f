"""Batch inference with trained blendkit models.

    python infer.py rank   --data FILE --model DIR --output OUT.jsonl [--pool pool12.txt] [--plot OUT.png]
    python infer.py fuse   --data FILE --model FUSER_DIR [--ranker DIR] --output OUT.jsonl [--top-k 3]
    python infer.py export --checkpoint CKPT_OR_DIR --output DIR

Errors in the input name file, line and field; add --debug for a full traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _write_jsonl(path: str, records) -> None:
    from blendkit.atomic import atomic_open

    with atomic_open(path) as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def cmd_rank(args: argparse.Namespace) -> None:
    from blendkit.data import ScoreSpec
    from blendkit.offline import resolve_model
    from blendkit.pairranker import Ranker
    from blendkit.pairranker.batch import rank_dataset

    data = _load_input(args)
    ranker = Ranker.from_pretrained(resolve_model(args.model), device=args.device, batch_size=args.batch_size)
    spec = ScoreSpec(tuple(args.score_keys)) if args.score_keys else None
    start = time.time()
    records, metrics, results = rank_dataset(ranker, data, args.aggregation, spec, progress=not args.quiet,
                                             return_matrix=bool(args.plot))
    if args.compact:
        records = [{"id": r["id"], "candidates": [{"model": c["model"], "rank": c["rank"],
                                                   "ranker_score": c["ranker_score"]} for c in r["candidates"]]}
                   for r in records]
    _write_jsonl(args.output, records)
    summary = {"rows": len(records), "skipped": len(data.skipped), "seconds": round(time.time() - start, 1),
               "output": os.path.abspath(args.output)}
    if metrics:
        summary["metrics"] = metrics
    if args.show:
        _show_examples(records, args.show)
    if args.plot:
        from blendkit.pairranker.plot import plot_ranking

        key = args.score_keys[0] if args.score_keys else None
        summary["plot"] = os.path.abspath(plot_ranking(records, results, args.plot, key))
    print(json.dumps(summary, indent=2))


def cmd_fuse(args: argparse.Namespace) -> None:
    from blendkit.genfuser import Fuser
    from blendkit.genfuser.batch import fuse_dataset
    from blendkit.genfuser.metrics import FusionMetrics

    data = _load_input(args, min_candidates=1)
    fuser = Fuser.from_pretrained(args.model, device=args.device, batch_size=args.batch_size)
    ranker = None
    if args.ranker:
        from blendkit.pairranker import Ranker

        ranker = Ranker.from_pretrained(args.ranker, device=args.device)
    generate = {"num_beams": args.num_beams, "max_new_tokens": args.max_new_tokens or fuser.formatter.target_max_length,
                "no_repeat_ngram_size": args.no_repeat_ngram_size}
    if args.do_sample:
        generate.update(do_sample=True, temperature=args.temperature, top_p=args.top_p)
    bertscore = None if args.bertscore_model.lower() == "none" else args.bertscore_model
    metrics = FusionMetrics(bertscore) if not args.no_metrics else None
    start = time.time()
    records, values = fuse_dataset(fuser, data, ranker=ranker, top_k=args.top_k, metrics=metrics,
                                   progress=not args.quiet, **generate)
    _write_jsonl(args.output, records)
    summary = {"rows": len(records), "skipped": len(data.skipped), "seconds": round(time.time() - start, 1),
               "output": os.path.abspath(args.output)}
    if values:
        summary["metrics"] = values
    for record in records[:args.show]:
        print(f"\n### {record['id']}: {record['instruction'][:160]!r}\n  fused from {record['fused_from']}:\n  "
              f"{record['fused'][:400]!r}", file=sys.stderr)
    print(json.dumps(summary, indent=2))


def _show_examples(records: list[dict], count: int) -> None:
    """Print a few ranked rows for a person to look at (to stderr, so stdout stays JSON)."""
    for record in records[:count]:
        print(f"\n### {record['id']}: {record.get('instruction', '')[:160]!r}", file=sys.stderr)
        for cand in sorted(record["candidates"], key=lambda c: c["rank"])[:3]:
            judged = "".join(f" {k}={v:.3f}" for k, v in (cand.get("scores") or {}).items())
            text = (cand.get("text") or "").replace("\n", " ")[:120]
            print(f"  #{cand['rank']} {cand['model']:<22} ranker={cand['ranker_score']:+.2f}{judged}  {text!r}",
                  file=sys.stderr)
    print(file=sys.stderr)


def cmd_export(args: argparse.Namespace) -> None:
    from blendkit.export import export_checkpoint

    path = export_checkpoint(args.checkpoint, args.output, merge_lora=not args.adapter_only)
    print(json.dumps({"exported": os.path.abspath(path)}))


def _load_input(args: argparse.Namespace, **options):
    """Check the output path first (fail before any work), then load --data and report skipped rows."""
    from blendkit.data import load_mixinstruct

    _check_output(args.output)
    data = load_mixinstruct(args.data, split=args.split, pool=args.pool, on_error=args.on_error, limit=args.limit,
                            **options)
    print(data.summary(), file=sys.stderr)
    for message in data.skip_messages():
        print(f"  {message}", file=sys.stderr)
    return data


def _check_output(path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"output {path}: the directory {directory} does not exist; create it first.")
    if not os.access(directory, os.W_OK):
        raise PermissionError(f"output {path}: the directory {directory} is not writable.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="infer.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    rank = sub.add_parser("rank", help="rank each row's candidates with a PairRanker")
    rank.add_argument("--data", required=True, help=".jsonl/.jsonl.gz/.json file, saved dataset dir, or Hub id")
    rank.add_argument("--split", default=None, help="split name for dataset dirs / Hub ids (default: train)")
    rank.add_argument("--model", required=True, help="ranker directory (save_pretrained / infer.py export)")
    rank.add_argument("--output", required=True, help="output .jsonl (written atomically)")
    rank.add_argument("--pool", default=None, help="file of model names (one a line) or 'all' (default)")
    rank.add_argument("--aggregation", default="max_logits", choices=["max_logits", "max_wins", "knockout"])
    rank.add_argument("--score-keys", nargs="*", default=["judge"],
                      help="score keys for metrics when the data has them (default: judge)")
    rank.add_argument("--batch-size", type=int, default=64, help="pair sequences per forward pass")
    rank.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cpu)")
    rank.add_argument("--on-error", default="raise", choices=["raise", "skip"], help="bad rows: stop or skip")
    rank.add_argument("--limit", type=int, default=None, help="only the first N valid rows")
    rank.add_argument("--compact", action="store_true", help="write only id, model, rank, ranker_score")
    rank.add_argument("--plot", default=None, help="also write a PNG of picks per model and pairwise win rates")
    rank.add_argument("--show", type=int, default=0, help="print the top 3 of the first N rows")
    rank.add_argument("--quiet", action="store_true", help="no progress bar")
    rank.set_defaults(func=cmd_rank)

    fuse = sub.add_parser("fuse", help="fuse each row's top-K candidates with a GenFuser")
    fuse.add_argument("--data", required=True, help="MixInstruct rows (e.g. the output of infer.py rank)")
    fuse.add_argument("--split", default=None)
    fuse.add_argument("--model", required=True, help="fuser directory")
    fuse.add_argument("--ranker", default=None, help="rank candidates with this ranker first (else: the file's "
                      "rank fields, else the order given)")
    fuse.add_argument("--output", required=True)
    fuse.add_argument("--pool", default=None)
    fuse.add_argument("--top-k", type=int, default=None, help="candidates fused per row (default: the fuser's)")
    fuse.add_argument("--num-beams", type=int, default=1)
    fuse.add_argument("--max-new-tokens", type=int, default=None)
    fuse.add_argument("--no-repeat-ngram-size", type=int, default=3)
    fuse.add_argument("--do-sample", action="store_true")
    fuse.add_argument("--temperature", type=float, default=0.7)
    fuse.add_argument("--top-p", type=float, default=0.9)
    fuse.add_argument("--batch-size", type=int, default=8)
    fuse.add_argument("--device", default=None)
    fuse.add_argument("--on-error", default="raise", choices=["raise", "skip"])
    fuse.add_argument("--limit", type=int, default=None)
    fuse.add_argument("--bertscore-model", default="minilm", help="encoder for BERTScore ('none' to skip it)")
    fuse.add_argument("--no-metrics", action="store_true", help="do not score against the rows' references")
    fuse.add_argument("--show", type=int, default=0, help="print the first N fused answers")
    fuse.add_argument("--quiet", action="store_true")
    fuse.set_defaults(func=cmd_fuse)

    export = sub.add_parser("export", help="Lightning checkpoint -> Hugging Face folder (safetensors, tokenizer)")
    export.add_argument("--checkpoint", required=True, help="a .ckpt file from train.py, or a saved model folder")
    export.add_argument("--output", required=True, help="directory to write (replaced atomically)")
    export.add_argument("--adapter-only", action="store_true", help="LoRA runs: save only the adapter")
    export.set_defaults(func=cmd_export)
    return parser


def main(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    from blendkit.cli_errors import run_cli

    sys.exit(run_cli(main))

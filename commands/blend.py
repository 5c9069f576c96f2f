"""``blendkit blend``: (generate) → rank → fuse every row, resumable: rerun the same command after a crash."""

from __future__ import annotations

import argparse
import json
import sys

from ..core.offline import resolve_model
from ..genfuser import Fuser
from ..packllm import WEIGHTINGS, PackLLMGenerator
from ..pairranker import Ranker
from ..pairranker.aggregation import AGGREGATIONS
from ..pairranker.inference import PRECISIONS
from ..pipeline import BlendModule, BlendOptions, blend_quality, fingerprint, run_blend
from .inputs import add_data_args, load_input


def add_parser(sub) -> None:
    blend = sub.add_parser("blend", help="(generate) → rank → fuse each row; resumable, multi-device")
    add_data_args(blend, "MixInstruct rows (candidates optional with --generate-with)")
    blend.add_argument("--ranker", required=True, help="ranker folder")
    blend.add_argument("--fuser", default=None, help="fuser folder (without it: rank and select only)")
    blend.add_argument("--generate-with", nargs="*", default=None, metavar="MODEL",
                       help="causal LMs for PackLLM candidates (e.g. smollm2 gemma3-270m)")
    blend.add_argument("--weighting", default="shrunk", choices=WEIGHTINGS)
    blend.add_argument("--members-alone", action="store_true", help="also add each generator member's own answer")
    blend.add_argument("--no-fused-generation", action="store_true", help="with --members-alone: only those")
    blend.add_argument("--max-new-tokens", type=int, default=128, help="PackLLM answer length")
    blend.add_argument("--top-k", type=int, default=None, help="candidates fused (default: the fuser's)")
    blend.add_argument("--aggregation", default="max_logits", choices=AGGREGATIONS)
    blend.add_argument("--fuse-max-new-tokens", type=int, default=None)
    blend.add_argument("--num-beams", type=int, default=1)
    blend.add_argument("--no-repeat-ngram-size", type=int, default=3)
    blend.add_argument("--batch-size", type=int, default=4, help="rows per predict step")
    blend.add_argument("--rank-batch-size", type=int, default=16, help="pair sequences per ranker forward")
    blend.add_argument("--rank-precision", default="auto", choices=PRECISIONS,
                       help="the ranker's: auto (bf16 where computed natively, else fp32) or fp32 (exact)")
    blend.add_argument("--accelerator", default="auto", help="cpu, gpu, auto")
    blend.add_argument("--devices", default="1", help="devices (number, list or 'auto')")
    blend.add_argument("--strategy", default="auto", help="a Lightning strategy: auto, ddp (tested on CPU), ...")
    blend.add_argument("--precision", default=None, help="e.g. bf16-mixed on GPUs (default: 32-true)")
    blend.add_argument("--overwrite", action="store_true", help="recompute even if OUT holds a finished blend")
    blend.add_argument("--show", type=int, default=0, help="print the first N blended rows")
    blend.set_defaults(run=run)


def run(args: argparse.Namespace) -> dict | None:
    data = load_input(args, min_candidates=0 if args.generate_with else 1)
    ranker = Ranker.from_pretrained(resolve_model(args.ranker), batch_size=args.rank_batch_size,
                                    precision=args.rank_precision)
    fuser = Fuser.from_pretrained(args.fuser) if args.fuser else None
    generator = (PackLLMGenerator.from_pretrained(args.generate_with, weighting=args.weighting)
                 if args.generate_with else None)
    fuse = {"num_beams": args.num_beams, "no_repeat_ngram_size": args.no_repeat_ngram_size}
    if args.fuse_max_new_tokens:
        fuse["max_new_tokens"] = args.fuse_max_new_tokens
    options = BlendOptions(top_k=args.top_k, aggregation=args.aggregation, generate_fused=not args.no_fused_generation,
                           generate_members=args.members_alone, generate={"max_new_tokens": args.max_new_tokens},
                           fuse=fuse)
    # What decides the output, and so must match when a run is resumed: the models, the options, the rows.
    models = {"ranker": args.ranker, "fuser": args.fuser, "generate_with": args.generate_with,
              "weighting": args.weighting if generator else None}
    rows = {"pool": args.pool, "split": args.split, "limit": args.limit, "on_error": args.on_error}
    expected = fingerprint(args.data, {"models": models, "options": options.to_dict(), "rows": rows,
                                       "precision": args.precision})
    devices = int(args.devices) if str(args.devices).isdigit() else args.devices
    result = run_blend(BlendModule(ranker, fuser, generator, options), list(data.dataset), args.output, expected,
                       batch_size=args.batch_size, accelerator=args.accelerator, devices=devices,
                       strategy=args.strategy, precision=args.precision, progress=not args.quiet,
                       overwrite=args.overwrite)
    if "output" not in result:
        return None   # not global rank 0: rank 0 reports
    result["skipped"] = len(data.skipped)
    if data.skipped:
        result["skipped_reasons"] = data.skip_messages()
    quality = blend_quality(args.output)
    if quality:
        result["metrics"] = quality
    result["rows_per_second"] = round(result["computed"] / max(result["seconds"], 1e-9), 3)
    if args.show:
        _show_rows(args.output, args.show)
    return result


def _show_rows(path: str, count: int) -> None:
    with open(path, encoding="utf-8") as f:
        for line in list(f)[:count]:
            row = json.loads(line)
            generated = "".join(f"\n  generated {c['model']} (rank {c['rank']}, λ={c['packllm']['weights']}): "
                                f"{c['text'][:200]!r}" for c in row["candidates"] if c.get("packllm"))
            print(f"\n### {row['id']}: {row['instruction'][:160]!r}{generated}\n  selected "
                  f"({row['selected']['model']}): {row['selected']['text'][:200]!r}"
                  + (f"\n  fused: {row['fused'][:300]!r}" if "fused" in row else ""), file=sys.stderr)

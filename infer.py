"""Batch inference with trained blendkit models.

    python infer.py rank   --data FILE --model DIR --output OUT.jsonl [--pool pool12.txt] [--plot OUT.png]
    python infer.py fuse   --data FILE --model FUSER_DIR [--ranker DIR] --output OUT.jsonl [--top-k 3]
    python infer.py generate --models smollm2 gemma3-270m --data FILE --output OUT.jsonl [--weighting exact]
    python infer.py blend  --data FILE --ranker DIR [--fuser DIR] [--generate-with MODELS...] --output OUT.jsonl
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


def cmd_generate(args: argparse.Namespace) -> None:
    """Append one PackLLM-fused answer per row as a candidate named packllm-<weighting>."""
    from blendkit.data.load import candidate_record
    from blendkit.data.text import source_text
    from blendkit.packllm import PackLLMGenerator

    data = _load_input(args, min_candidates=0)
    import torch

    dtype = {"float32": None, "bfloat16": torch.bfloat16}[args.dtype]
    generator = PackLLMGenerator.from_pretrained(args.models, weighting=args.weighting, device=args.device or "cpu",
                                                 dtype=dtype, tau=args.tau, top_m=args.top_m, chat=not args.no_chat)
    rows = list(data.dataset)
    prompts = [source_text(r["instruction"], r.get("input") or "") for r in rows]
    start = time.time()
    outputs = generator.generate(prompts, max_new_tokens=args.max_new_tokens, do_sample=args.do_sample,
                                 temperature=args.temperature, top_p=args.top_p, stop=args.stop or (),
                                 seed=args.seed, batch_size=args.batch_size, progress=not args.quiet)
    name = args.name or f"packllm-{args.weighting}"
    records = []
    for row, out in zip(rows, outputs):
        candidates = [candidate_record(c) for c in row["candidates"] if c["model"] != name]
        candidates.append({"model": name, "decoding_method": "sample" if args.do_sample else "greedy",
                           "text": out.text, "scores": {},
                           "packllm": {"members": generator.names, "weights": out.weights,
                                       "tokens": out.tokens, "finish_reason": out.finish_reason}})
        records.append({**{k: v for k, v in row.items() if k != "candidates"}, "candidates": candidates})
    _write_jsonl(args.output, records)
    seconds = time.time() - start
    tokens = sum(o.tokens for o in outputs)
    for record, out in list(zip(records, outputs))[:args.show]:
        print(f"\n### {record['id']} λ={out.weights}: {record['instruction'][:120]!r}\n  {out.text[:400]!r}",
              file=sys.stderr)
    print(json.dumps({"rows": len(records), "skipped": len(data.skipped), "members": generator.names,
                      "weighting": args.weighting, "new_tokens": tokens, "seconds": round(seconds, 1),
                      "tokens_per_second": round(tokens / max(seconds, 1e-9), 2),
                      "output": os.path.abspath(args.output)}, indent=2))


def cmd_blend(args: argparse.Namespace) -> None:
    """(generate) → rank → fuse every row, resumable: rerun the same command after a crash to continue."""
    from blendkit.blend import BlendModule, BlendOptions, fingerprint, run_blend
    from blendkit.offline import resolve_model
    from blendkit.pairranker import Ranker

    data = _load_input(args, min_candidates=0 if args.generate_with else 1)
    settings = {name: getattr(args, name) for name in (
        "ranker", "fuser", "generate_with", "weighting", "members_alone", "no_fused_generation", "top_k",
        "aggregation", "max_new_tokens", "fuse_max_new_tokens", "num_beams", "no_repeat_ngram_size", "pool",
        "split", "limit", "on_error", "precision")}
    ranker = Ranker.from_pretrained(resolve_model(args.ranker), batch_size=args.rank_batch_size)
    fuser = generator = None
    if args.fuser:
        from blendkit.genfuser import Fuser

        fuser = Fuser.from_pretrained(args.fuser)
    if args.generate_with:
        from blendkit.packllm import PackLLMGenerator

        generator = PackLLMGenerator.from_pretrained(args.generate_with, weighting=args.weighting)
    fuse = {"num_beams": args.num_beams, "no_repeat_ngram_size": args.no_repeat_ngram_size}
    if args.fuse_max_new_tokens:
        fuse["max_new_tokens"] = args.fuse_max_new_tokens
    options = BlendOptions(top_k=args.top_k, aggregation=args.aggregation, generate_fused=not args.no_fused_generation,
                           generate_members=args.members_alone, generate={"max_new_tokens": args.max_new_tokens},
                           fuse=fuse)
    module = BlendModule(ranker, fuser, generator, options)
    devices = int(args.devices) if str(args.devices).isdigit() else args.devices
    summary = run_blend(module, list(data.dataset), args.output, fingerprint(args.data, settings),
                        batch_size=args.batch_size, accelerator=args.accelerator, devices=devices,
                        strategy=args.strategy, precision=args.precision, progress=not args.quiet,
                        overwrite=args.overwrite)
    if "output" not in summary:
        return  # not global rank 0
    summary["skipped"] = len(data.skipped)
    if data.skipped:
        summary["skipped_reasons"] = data.skip_messages()
    from blendkit.blend import blend_quality

    quality = blend_quality(args.output)
    if quality:
        summary["metrics"] = quality
    summary["rows_per_second"] = round(summary["computed"] / max(summary["seconds"], 1e-9), 3)
    if args.show:
        with open(args.output, encoding="utf-8") as f:
            for line in list(f)[:args.show]:
                row = json.loads(line)
                generated = "".join(f"\n  generated {c['model']} (rank {c['rank']}, λ={c['packllm']['weights']}): "
                                    f"{c['text'][:200]!r}" for c in row["candidates"] if c.get("packllm"))
                print(f"\n### {row['id']}: {row['instruction'][:160]!r}{generated}\n  selected "
                      f"({row['selected']['model']}): {row['selected']['text'][:200]!r}"
                      + (f"\n  fused: {row['fused'][:300]!r}" if "fused" in row else ""), file=sys.stderr)
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
    from blendkit.export import export_checkpoint, push_to_hub, write_model_card

    metrics = None
    if args.metrics:
        with open(args.metrics, encoding="utf-8") as f:
            metrics = json.load(f)
        metrics = metrics.get("metrics", metrics)
        metrics = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    path = export_checkpoint(args.checkpoint, args.output, merge_lora=not args.adapter_only)
    card = write_model_card(path, args.push_to_hub, args.base_model, args.dataset, metrics, args.license)
    result = {"exported": os.path.abspath(path), "model_card": os.path.abspath(card)}
    if args.push_to_hub:
        result["pushed"] = push_to_hub(path, args.push_to_hub, private=args.private)
    print(json.dumps(result))


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


def _data_args(parser: argparse.ArgumentParser, data_help: str) -> None:
    """The input/output options every batch subcommand shares."""
    parser.add_argument("--data", required=True, help=data_help)
    parser.add_argument("--split", default=None, help="split name for dataset dirs / Hub ids (default: train)")
    parser.add_argument("--output", required=True, help="output .jsonl (written atomically)")
    parser.add_argument("--pool", default=None, help="file of model names (one a line) or 'all' (default)")
    parser.add_argument("--on-error", default="raise", choices=["raise", "skip"], help="bad rows: stop or skip")
    parser.add_argument("--limit", type=int, default=None, help="only the first N valid rows")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="infer.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    rank = sub.add_parser("rank", help="rank each row's candidates with a PairRanker")
    _data_args(rank, ".jsonl/.jsonl.gz/.json file, saved dataset dir, or Hub id")
    rank.add_argument("--model", required=True, help="ranker directory (save_pretrained / infer.py export)")
    rank.add_argument("--aggregation", default="max_logits", choices=["max_logits", "max_wins", "knockout"])
    rank.add_argument("--score-keys", nargs="*", default=["judge"],
                      help="score keys for metrics when the data has them (default: judge)")
    rank.add_argument("--batch-size", type=int, default=64, help="pair sequences per forward pass")
    rank.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cpu)")
    rank.add_argument("--compact", action="store_true", help="write only id, model, rank, ranker_score")
    rank.add_argument("--plot", default=None, help="also write a PNG of picks per model and pairwise win rates")
    rank.add_argument("--show", type=int, default=0, help="print the top 3 of the first N rows")
    rank.set_defaults(func=cmd_rank)

    fuse = sub.add_parser("fuse", help="fuse each row's top-K candidates with a GenFuser")
    _data_args(fuse, "MixInstruct rows (e.g. the output of infer.py rank)")
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
    fuse.set_defaults(func=cmd_fuse)

    gen = sub.add_parser("generate", help="add a PackLLM-fused answer to each row as a candidate")
    _data_args(gen, "MixInstruct rows; rows may have only id + instruction")
    gen.add_argument("--models", nargs="+", required=True,
                     help="causal LMs (Hub ids, folders, or packaged: smollm2, gemma3-270m); the first is the primary")
    gen.add_argument("--weighting", default="exact", choices=["uniform", "sim", "greedy", "exact"])
    gen.add_argument("--tau", type=float, default=0.1, help="temperature of the sim weighting")
    gen.add_argument("--top-m", type=int, default=None,
                     help="solve weights on each member's top-M tokens + pooled rest (faster, approximate; "
                          "default: the whole vocabulary, exact)")
    gen.add_argument("--max-new-tokens", type=int, default=128)
    gen.add_argument("--do-sample", action="store_true")
    gen.add_argument("--temperature", type=float, default=0.7)
    gen.add_argument("--top-p", type=float, default=0.9)
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--stop", nargs="*", default=None, help="stop strings")
    gen.add_argument("--no-chat", action="store_true", help="feed the raw instruction, not the chat template")
    gen.add_argument("--name", default=None, help="candidate model name (default: packllm-<weighting>)")
    gen.add_argument("--batch-size", type=int, default=8)
    gen.add_argument("--device", default=None)
    gen.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    gen.add_argument("--show", type=int, default=0, help="print the first N answers")
    gen.set_defaults(func=cmd_generate)

    blend = sub.add_parser("blend", help="(generate) → rank → fuse each row; resumable, multi-device")
    _data_args(blend, "MixInstruct rows (candidates optional with --generate-with)")
    blend.add_argument("--ranker", required=True, help="ranker folder")
    blend.add_argument("--fuser", default=None, help="fuser folder (without it: rank and select only)")
    blend.add_argument("--generate-with", nargs="*", default=None, metavar="MODEL",
                       help="causal LMs for PackLLM candidates (e.g. smollm2 gemma3-270m)")
    blend.add_argument("--weighting", default="exact", choices=["uniform", "sim", "greedy", "exact"])
    blend.add_argument("--members-alone", action="store_true", help="also add each generator member's own answer")
    blend.add_argument("--no-fused-generation", action="store_true", help="with --members-alone: only those")
    blend.add_argument("--max-new-tokens", type=int, default=128, help="PackLLM answer length")
    blend.add_argument("--top-k", type=int, default=None, help="candidates fused (default: the fuser's)")
    blend.add_argument("--aggregation", default="max_logits", choices=["max_logits", "max_wins", "knockout"])
    blend.add_argument("--fuse-max-new-tokens", type=int, default=None)
    blend.add_argument("--num-beams", type=int, default=1)
    blend.add_argument("--no-repeat-ngram-size", type=int, default=3)
    blend.add_argument("--batch-size", type=int, default=4, help="rows per predict step")
    blend.add_argument("--rank-batch-size", type=int, default=32, help="pair sequences per ranker forward")
    blend.add_argument("--accelerator", default="auto", help="cpu, gpu, auto")
    blend.add_argument("--devices", default="1", help="devices (number, list or 'auto')")
    blend.add_argument("--strategy", default="auto", help="a Lightning strategy: auto, ddp (tested on CPU), ...")
    blend.add_argument("--precision", default=None, help="e.g. bf16-mixed on GPUs (default: 32-true)")
    blend.add_argument("--overwrite", action="store_true", help="recompute even if OUT holds a finished blend")
    blend.add_argument("--show", type=int, default=0, help="print the first N blended rows")
    blend.set_defaults(func=cmd_blend)

    export = sub.add_parser("export", help="Lightning checkpoint -> Hugging Face folder (safetensors, tokenizer)")
    export.add_argument("--checkpoint", required=True, help="a .ckpt file from train.py, or a saved model folder")
    export.add_argument("--output", required=True, help="directory to write (replaced atomically)")
    export.add_argument("--adapter-only", action="store_true", help="LoRA runs: save only the adapter")
    export.add_argument("--push-to-hub", default=None, metavar="REPO_ID", help="also upload the folder to the Hub")
    export.add_argument("--private", action="store_true", help="create the Hub repo as private")
    export.add_argument("--base-model", default=None, help="model card: the backbone's Hub id (default: guessed)")
    export.add_argument("--dataset", action="append", default=[], help="model card: training data (repeatable)")
    export.add_argument("--metrics", default=None, help="model card: a metrics.json (e.g. from benchmarks/)")
    export.add_argument("--license", default="apache-2.0")
    export.set_defaults(func=cmd_export)
    return parser


def main(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    from blendkit.cli_errors import run_cli

    sys.exit(run_cli(main))

"""PairRanker speed on this machine, as ratios measured in one run (absolute times are noisy here).

    python benchmarks/ranker_speed.py [--model runs/ranker_quality/model] [--rows 20] [--sections inference]

Prints JSON with:
  train:     training pairs/s of a reference fine-tune (LLM-Blender's plain settings: fp32, shuffled
             row-ordered pairs, dropout 0.1, nothing frozen) vs. the same model with blendkit's settings and
             vs. the CPU recipe, with their loss curves (benchmarks/ranker_train_speed.py, which runs alone too);
  inference: comparisons/s of the full matrix (both orders, max_logits) in a reference mode with
             LLM-Blender's plain settings (fp32 eager, pairs in row order, batch 16) vs. blendkit's
             default Ranker (length-sorted batches, bf16 autocast where the CPU has native bf16),
             median of --repeats runs, and how far the default's rankings are from the reference:
             top-1 identical %, full order identical %, max/mean |Δ order-averaged logit|;
             --levers times single levers (bf16, batch size, sorting, int8, torch.compile) likewise;
  knockout:  forward passes, time and top-1 quality of knockout vs. the full matrix (max_logits)
             on the val pool; top-1 figures need a trained --model.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time

import torch
from common import SHARED

SECTIONS = ("train", "inference", "knockout")
# LLM-Blender's plain settings: fp32 eager, pairs in row order (no length sorting), one pair per sequence, 16 a batch.
REFERENCE = {"precision": "fp32", "bucket_by_length": False, "batch_size": 16}
# Single levers, each timed against the reference with --levers: (how the model is changed, Ranker settings).
LEVERS = {
    "fp32_sorted_b16": (None, {"precision": "fp32", "batch_size": 16}),
    "fp32_sorted_b64": (None, {"precision": "fp32", "batch_size": 64}),
    "bf16_unsorted_b16": (None, {"precision": "bf16", "bucket_by_length": False, "batch_size": 16}),
    "bf16_sorted_b8": (None, {"precision": "bf16", "batch_size": 8}),
    "bf16_sorted_b16": (None, {"precision": "bf16", "batch_size": 16}),
    "bf16_sorted_b32": (None, {"precision": "bf16", "batch_size": 32}),
    "bf16_sorted_b64": (None, {"precision": "bf16", "batch_size": 64}),
    "bf16_sorted_b128": (None, {"precision": "bf16", "batch_size": 128}),
    "bf16_autocast_sorted_b32": (None, {"precision": "bf16-autocast", "batch_size": 32}),
    "bf16_whole_model_sorted_b32": ("bf16_weights", {"precision": "fp32", "batch_size": 32}),
    "int8_dynamic_sorted_b32": ("int8_dynamic", {"precision": "fp32", "batch_size": 32}),
    "compile_bf16_whole_model_sorted_b32": ("compile_bf16", {"precision": "fp32", "batch_size": 32}),
    "compile_frozen_bf16_whole_model_sorted_b32": ("compile_frozen_bf16", {"precision": "fp32", "batch_size": 32}),
}


def timed(run):
    """(seconds, result) of ``run()``."""
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def inference_model(args, lengths: dict):
    """The ranker to time: the trained ``--model``, else a fresh MiniLM ranker (random head, same network cost)."""
    from transformers import AutoTokenizer

    from blendkit.pairranker import PairRankerModel

    if args.model:
        model, tokenizer = PairRankerModel.from_pretrained(args.model), AutoTokenizer.from_pretrained(args.model)
    else:
        torch.manual_seed(0)
        model, tokenizer = PairRankerModel.from_backbone("minilm", **lengths)
    return model.eval(), tokenizer


def changed_model(model, change: str | None):
    """A copy of ``model`` with one lever applied (the original is left as it is)."""
    if change is None:
        return model
    model = copy.deepcopy(model)
    if change == "bf16_weights":
        return model.to(torch.bfloat16)
    if change == "int8_dynamic":
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    if change in ("compile_bf16", "compile_frozen_bf16"):
        from torch._inductor import config as inductor_config

        # Freezing lets inductor pre-pack the weights for oneDNN and fuse bias and GELU into the matmuls.
        inductor_config.freezing = change == "compile_frozen_bf16"
        model = model.to(torch.bfloat16)
        model.encoder = torch.compile(model.encoder, dynamic=True)
        return model
    raise ValueError(f"unknown model change {change!r}")


def count_padding(ranker) -> dict:
    """Wrap ``ranker.encoder.collate`` to count real and padded token slots of every batch it builds."""
    counts = {"real": 0, "slots": 0}
    collate = ranker.encoder.collate

    def counting(pairs, labels=None):
        batch = collate(pairs, labels)
        counts["real"] += int(batch["attention_mask"].sum())
        counts["slots"] += batch["attention_mask"].numel()
        return batch

    ranker.encoder.collate = counting
    return counts


def agreement(reference: list, other: list) -> dict:
    """How closely ``other``'s rankings follow ``reference``'s (RankResults of the same rows, with matrices)."""
    from blendkit.pairranker.inference import BF16_LOGIT_TOLERANCE

    deltas, allowed = [], []
    for a, b in zip(reference, other, strict=True):
        n = len(a.ranks)
        ma, mb = torch.tensor(a.matrix), torch.tensor(b.matrix)
        upper = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
        deltas.append((ma - mb)[upper].abs())
        allowed.append(BF16_LOGIT_TOLERANCE["atol"] + BF16_LOGIT_TOLERANCE["rtol"] * ma[upper].abs())
    deltas, allowed = torch.cat(deltas), torch.cat(allowed)
    return {
        "rows": len(reference),
        "top1_identical_pct": round(100 * sum(a.best == b.best for a, b in zip(reference, other)) / len(reference), 1),
        "full_order_identical_pct": round(
            100 * sum(a.ranks == b.ranks for a, b in zip(reference, other)) / len(reference), 1),
        "max_abs_dlogit": float(f"{deltas.max():.3g}"),
        "mean_abs_dlogit": float(f"{deltas.mean():.3g}"),
        "max_abs_logit": float(f"{torch.cat([torch.tensor(a.matrix).flatten() for a in reference]).abs().max():.3g}"),
        "within_bf16_tolerance_pct": round(100 * float((deltas <= allowed).double().mean()), 2),
    }


def inference_report(model, tokenizer, data, args) -> dict:
    """Comparisons/s of the full matrix (max_logits, both orders) in the reference mode, blendkit's default
    Ranker and any --levers, median of --repeats runs, interleaved so drifts in machine load hit all alike;
    then how far the default's rankings and logits are from the fp32 reference."""
    from blendkit.data import ScoreSpec, load_mixinstruct
    from blendkit.pairranker import Ranker
    from blendkit.pairranker.batch import rank_dataset
    from blendkit.pairranker.inference import BF16_LOGIT_TOLERANCE

    spec = ScoreSpec(("judge",))
    modes = {"reference": (None, REFERENCE), "default": (None, {})}
    modes.update({name: LEVERS[name] for name in args.levers})
    rankers, padding, setup_s = {}, {}, {}
    first = data.dataset[0]
    for name, (change, settings) in modes.items():
        seconds, ranker = timed(lambda: Ranker(changed_model(model, change), tokenizer, **settings))
        # First calls set kernels up (and torch.compile compiles): warm up on one real row, untimed.
        warm_s, _ = timed(lambda: ranker.rank(first["instruction"], [c["text"] for c in first["candidates"]]))
        setup_s[name] = round(seconds + warm_s, 1)
        rankers[name], padding[name] = ranker, count_padding(ranker)

    times: dict[str, list[float]] = {name: [] for name in modes}
    results = {}
    for _ in range(args.repeats):
        for name, ranker in rankers.items():
            seconds, (_, metrics, results[name]) = timed(lambda: rank_dataset(
                ranker, data, "max_logits", spec, progress=False, return_matrix=True))
            times[name].append(seconds)
    comparisons = metrics["comparisons"]
    rate = {name: comparisons / statistics.median(t) for name, t in times.items()}
    default = rankers["default"]
    report = {
        "rows": len(data), "comparisons_per_run": comparisons, "repeats": args.repeats,
        "trained_model": bool(args.model),
        "reference_settings": REFERENCE,
        "bf16_logit_tolerance": BF16_LOGIT_TOLERANCE,
        "default_settings": {"precision": f"{default.precision} -> {default.compute_precision}",
                             "bucket_by_length": default.bucket_by_length, "batch_size": default.batch_size},
        "comparisons_per_s": {name: round(r, 1) for name, r in rate.items()},
        "speedup_default_over_reference": round(rate["default"] / rate["reference"], 2),
        "real_token_share": {name: round(c["real"] / max(c["slots"], 1), 3) for name, c in padding.items()},
        "setup_and_warmup_s": setup_s,
        "agreement_default_vs_reference": agreement(results["reference"], results["default"]),
    }
    report.update({f"speedup_{name}_over_reference": round(rate[name] / rate["reference"], 2) for name in args.levers})
    report.update({f"agreement_{name}_vs_reference": agreement(results["reference"], results[name])
                   for name in args.levers})

    # More rows for the agreement figures: fp32 with sorting and big batches stands in for the (slow) reference.
    if args.agreement_rows and args.agreement_rows > len(data):
        more = load_mixinstruct(args.data, pool=args.pool, required_scores=["judge"], limit=args.agreement_rows)
        exact = Ranker(model, tokenizer, precision="fp32", batch_size=64)
        _, _, exact_results = rank_dataset(exact, more, "max_logits", spec, progress=False, return_matrix=True)
        _, _, default_results = rank_dataset(default, more, "max_logits", spec, progress=False, return_matrix=True)
        report["agreement_default_vs_fp32_more_rows"] = agreement(exact_results, default_results)
    return report


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a trained ranker folder (for knockout quality)")
    parser.add_argument("--data", default=os.path.join(SHARED, "val.jsonl.gz"))
    parser.add_argument("--pool", default=os.path.join(SHARED, "pool12.txt"))
    parser.add_argument("--rows", type=int, default=20, help="val rows for inference / knockout timing")
    parser.add_argument("--train-steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--source-max-length", type=int, default=48)
    parser.add_argument("--candidate-max-length", type=int, default=96)
    parser.add_argument("--freeze-layers", type=int, default=3)
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="what to measure")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per inference mode (median reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the issue's figures use 2)")
    parser.add_argument("--levers", nargs="*", choices=sorted(LEVERS), default=[],
                        help="also time these single levers against the reference (see LEVERS)")
    parser.add_argument("--agreement-rows", type=int, default=None,
                        help="val rows for the agreement figures (default: the timed rows)")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.repeats < 1 or args.threads < 1:
        parser.error("--rows, --repeats and --threads must be positive")
    torch.set_num_threads(args.threads)

    from blendkit.data import ScoreSpec, load_mixinstruct
    from blendkit.pairranker import Ranker
    from blendkit.pairranker.batch import rank_dataset

    torch.manual_seed(0)
    data = load_mixinstruct(args.data, pool=args.pool, required_scores=["judge"], limit=args.rows)
    lengths = {"source_max_length": args.source_max_length, "candidate_max_length": args.candidate_max_length}
    report: dict = {"threads": torch.get_num_threads(), "lengths": lengths, "batch_size": args.batch_size}

    # --- training throughput: ranker_train_speed.py's modes, reference included ----------------------------
    if "train" in args.sections:
        from ranker_train_speed import measure

        report["train"] = measure(["--steps", str(args.train_steps), "--batch-size", str(args.batch_size),
                                   "--source-max-length", str(args.source_max_length),
                                   "--candidate-max-length", str(args.candidate_max_length),
                                   "--freeze-layers", str(args.freeze_layers)])

    # --- inference: LLM-Blender-like reference vs blendkit's default -------------------------------
    if "inference" in args.sections or "knockout" in args.sections:
        model, tokenizer = inference_model(args, lengths)
    if "inference" in args.sections:
        report["inference"] = inference_report(model, tokenizer, data, args)

    # --- knockout vs full matrix ------------------------------------------------------------------
    if "knockout" in args.sections:
        spec = ScoreSpec(("judge",))
        ranker = Ranker(model, tokenizer)
        full_time, (_, full_metrics, full_results) = timed(lambda: rank_dataset(ranker, data, "max_logits", spec,
                                                                                progress=False))
        ko_time, (_, ko_metrics, ko_results) = timed(lambda: rank_dataset(ranker, data, "knockout", spec,
                                                                          progress=False))
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

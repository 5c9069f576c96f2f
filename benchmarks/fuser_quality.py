"""Train the CPU default fuser recipe on TRAIN, fuse EVAL's rows with it and with the same model untrained
(zero-shot, same prompt), and compare both with the top-1 candidate they were given; print JSON.

    python benchmarks/fuser_quality.py --output runs/fuser_quality [--train-minutes 55] [--ranker DIR]
    python benchmarks/fuser_quality.py --output runs/fuser_quality --limit 5 --train-minutes 0.5   # smoke test
    python benchmarks/fuser_quality.py --output runs/fq2 --model runs/fuser_quality/model    # re-evaluate, no training

Defaults: the shipped CPU recipe (configs/genfuser/smollm2_cpu.yaml: SmolLM2-135M-Instruct + LoRA),
trained for at most --train-minutes (and --epochs) on ../shared/data/alpacaeval_mix/train, evaluated on
val, candidates from pool12. Which candidates are fused: the top-K by the judge score (the oracle
selection LLM-Blender trains with), or with --ranker DIR the top-K of that ranker, compared with that
ranker's own top-1.

Per row, against the reference answer: ROUGE-L F1 and BERTScore F1 (MiniLM, all layers) of the fused
answer, the zero-shot answer and the top-1 candidate. ``fused_vs_top1`` and ``fused_vs_zero_shot``:
paired bootstrap over rows (core/bootstrap.py) of the difference, its 95% interval and the share of
resamples where the fused answer is better; ``beats`` says whether each interval lies above 0 on both
metrics. ``copy``: how much each answer is spans of its inputs, as ROUGE-L against its closest input
and against the top-1 input, with the reference's own overlap for scale. Writes DIR/model (unless
--model), DIR/predictions.jsonl and DIR/metrics.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import yaml
from common import add_common_args, train_recipe, write_outputs


def _recipe_model_args(recipe: str) -> dict:
    with open(recipe, encoding="utf-8") as f:
        return yaml.safe_load(f)["model"]["init_args"]


def _ranked(data, ranker):
    """``data`` with every candidate's ``rank`` set: by ``ranker``, else by the judge score (oracle)."""
    from blendkit.data import ScoreSpec

    spec = ScoreSpec(("judge",))
    ranks = None
    if ranker is not None:
        ds = data.dataset
        texts = [[c["text"] for c in cands] for cands in ds["candidates"]]
        models = [[c["model"] for c in cands] for cands in ds["candidates"]]
        extra = {"models": models} if getattr(ranker, "uses_model_prior", False) else {}
        ranks = [r.ranks for r in ranker.rank(ds["instruction"], texts, inputs=ds["input"], **extra)]

    def with_ranks(row, k):
        if ranks is not None:
            order = sorted(range(len(ranks[k])), key=lambda i: (ranks[k][i], i))
        else:
            scores = spec.combine(row["candidates"])
            order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
        for rank, i in enumerate(order, start=1):
            row["candidates"][i]["rank"] = rank
        return row

    data.dataset = data.dataset.map(with_ranks, with_indices=True)
    return data


def _compare(a: list[float], b: list[float], resamples: int) -> dict:
    from blendkit.core.bootstrap import paired_bootstrap

    result = paired_bootstrap(a, b, lower_is_better=False, resamples=resamples)
    d = result.difference
    return {"difference": round(d.mean, 3), "low": round(d.low, 3), "high": round(d.high, 3),
            "p_fused_better": round(result.p_a_better, 4)}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, "genfuser/smollm2_cpu.yaml", minutes=55.0, epochs=1)
    parser.add_argument("--ranker", default=None, help="rank EVAL's candidates with this ranker (default: oracle)")
    parser.add_argument("--model", default=None, help="evaluate this trained fuser folder instead of training one")
    parser.add_argument("--no-zero-shot", action="store_true", help="skip the untrained fuser")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: the recipe's generate_kwargs")
    parser.add_argument("--batch-size", type=int, default=8, help="rows per generate() call")
    parser.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples")
    args = parser.parse_args(argv)

    from blendkit.data import load_mixinstruct
    from blendkit.genfuser import Fuser, build_fuser
    from blendkit.genfuser.batch import fuse_dataset
    from blendkit.genfuser.metrics import FusionMetrics, bertscore_f1, bertscore_metric, copy_overlaps, rouge_l

    os.makedirs(args.output, exist_ok=True)
    recipe_args = _recipe_model_args(args.recipe)
    train_seconds = 0.0
    model_dir = args.model
    if model_dir is None:
        model_dir, train_seconds = train_recipe(args.recipe, args.train, args.output, args.train_minutes,
                                                args.epochs, args.extra)
    generate = dict(recipe_args.get("generate_kwargs") or {})
    if args.max_new_tokens:
        generate["max_new_tokens"] = args.max_new_tokens

    data = load_mixinstruct(args.eval, pool=args.pool, required_scores=["judge"], min_candidates=1,
                            require_output=True, limit=args.limit)
    ranker = None
    if args.ranker:
        from blendkit.pairranker import Ranker

        ranker = Ranker.from_pretrained(args.ranker)
    data = _ranked(data, ranker)   # both fusers then take the same top-K ("ranks in file")

    answers, seconds = {}, {}
    fuser = Fuser.from_pretrained(model_dir, batch_size=args.batch_size)
    t0 = time.time()
    records, corpus = fuse_dataset(fuser, data, metrics=FusionMetrics(bertscore_model=None), progress=False,
                                   **generate)
    seconds["fused"], answers["fused"] = time.time() - t0, [r["fused"] for r in records]
    settings = fuser.formatter.settings.to_dict()
    del fuser
    if not args.no_zero_shot:
        zero_shot = Fuser(*build_fuser(recipe_args["backbone"]), batch_size=args.batch_size, **settings)
        t0 = time.time()
        plain, _ = fuse_dataset(zero_shot, data, progress=False, **generate)
        seconds["zero_shot"], answers["zero_shot"] = time.time() - t0, [r["fused"] for r in plain]
        del zero_shot

    references = [r["output"] for r in records]
    answers["top1"] = [r["selected"]["text"] for r in records]
    inputs = [[next(c["text"] for c in r["candidates"] if c["rank"] == k) for k in range(1, len(r["fused_from"]) + 1)]
              for r in records]
    bertscore = bertscore_metric("minilm")
    rows = {name: {"rougeL": rouge_l(texts, references), "bertscore": bertscore_f1(bertscore, texts, references)}
            for name, texts in answers.items()}
    report: dict = {"selection": f"ranker {args.ranker}" if ranker else "oracle (judge)", "eval_rows": len(records)}
    for metric in ("rougeL", "bertscore"):
        report[metric] = {name: round(sum(v[metric]) / len(v[metric]), 3) for name, v in rows.items()}
    for other in ("top1", "zero_shot"):
        if other in rows:
            report[f"fused_vs_{other}"] = {m: _compare(rows["fused"][m], rows[other][m], args.resamples)
                                           for m in ("rougeL", "bertscore")}
            report.setdefault("beats", {})[other] = all(v["low"] > 0 for v in report[f"fused_vs_{other}"].values())
    report["copy"] = {}
    for name, texts in {**answers, "reference": references}.items():
        overlaps = [copy_overlaps(text, row_inputs) for text, row_inputs in zip(texts, inputs)]
        report["copy"][name] = {"max_rougeL": round(sum(o[0] for o in overlaps) / len(overlaps), 3),
                                "top1_rougeL": round(sum(o[1] for o in overlaps) / len(overlaps), 3)}
    report["corpus"] = corpus
    report.update({"train_seconds": round(train_seconds), "train_minutes_budget": args.train_minutes,
                   "fuse_seconds": {k: round(v) for k, v in seconds.items()}, "generate": generate,
                   "recipe": os.path.relpath(args.recipe), "model": model_dir})
    predictions = [{"id": r["id"], "fused_from": r["fused_from"],
                    **{name: texts[k] for name, texts in answers.items()},
                    **{f"{name}_{m}": round(v[m][k], 3) for name, v in rows.items() for m in v}}
                   for k, r in enumerate(records)]
    write_outputs(args.output, predictions, report)


if __name__ == "__main__":
    main(sys.argv[1:])

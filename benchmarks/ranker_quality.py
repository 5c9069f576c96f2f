"""Train the CPU default ranker recipe on TRAIN, rank EVAL's pool, print quality with every baseline.

    python benchmarks/ranker_quality.py --output runs/ranker_quality           # defaults: shared train/val, pool12
    python benchmarks/ranker_quality.py --output runs/ranker_quality --model DIR   # an existing ranker, no training
    python benchmarks/ranker_quality.py --output runs/baselines --baselines-only   # the baselines alone (seconds)
    python benchmarks/ranker_quality.py --output runs/ranker_cv --cv 5             # 5-fold CV over TRAIN+EVAL

The headline is judge_rank: the rank under the judge (1 = best of the row's pool answers, ties share
the mean rank) of the answer the ranker puts first, averaged over rows; lower is better. Next to it:
top1 (the judge score of that answer ×100, i.e. mean P(beats the reference) in points; noisy, decided
by the few rows where some answer can win), pair_acc (% of non-tied pairs ordered like the judge) and
Spearman. judge_rank and top1 carry a 95% bootstrap interval (EVAL rows resampled). Every baseline of
``baselines.py`` is measured on the same rows: oracle, best single model (chosen on TRAIN), the
prior+length rule (fitted on TRAIN), longest answer, random pick; the ranker is also compared with
best_single and prior_length by a paired bootstrap (``compare_rankers.py`` does it for any two).

Writes DIR/model (the trained ranker, Hub format), DIR/predictions.jsonl (one row per EVAL row: id +
candidates with model, rank and ranker_score) and DIR/metrics.json (the ranker's metrics at the top,
the baselines under "baselines"); prints a table, then the report as one JSON line. The ranker trains on
every candidate of TRAIN (pool "all"); baselines are fitted, and everything evaluated, on --pool.

``--cv K`` pools TRAIN and EVAL, splits the rows into K folds by a hash of the instruction, and for each
fold fits the baselines (and, unless --baselines-only, trains the recipe for --train-minutes) on the other
folds, then evaluates on it; the table covers every row once. With --cv, --limit caps the pooled rows.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import sys
import time

from common import add_common_args, scored_rows, train_recipe, write_outputs


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, "pairranker/minilm_cpu.yaml", minutes=26.0, epochs=3)
    parser.add_argument("--aggregation", default="max_logits")
    parser.add_argument("--score-key", default="judge")
    parser.add_argument("--model", default=None, help="evaluate this trained ranker folder instead of training one")
    parser.add_argument("--baselines-only", action="store_true", help="no ranker: measure the baselines alone")
    parser.add_argument("--cv", type=int, default=None, metavar="K", help="K-fold cross-validation over TRAIN+EVAL")
    parser.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    args = parser.parse_args(argv)
    if args.model and (args.baselines_only or args.cv):
        parser.error("--model evaluates a given ranker on EVAL; it does not combine with --baselines-only or --cv")
    if args.cv is not None and args.cv < 2:
        parser.error(f"--cv needs at least 2 folds, got {args.cv}")

    os.makedirs(args.output, exist_ok=True)
    report = cross_validate(args) if args.cv else evaluate(args)
    write_outputs(args.output, report.pop("_predictions", None), report)


def evaluate(args) -> dict:
    """Baselines fitted on TRAIN and, unless --baselines-only, the ranker, all measured on EVAL's rows."""
    from baselines import all_baselines

    _, train_rows = scored_rows(args.train, args.pool, args.score_key)
    eval_data, rows = scored_rows(args.eval, args.pool, args.score_key, limit=args.limit)
    selections = all_baselines(train_rows, rows, args.score_key)
    report: dict = {"eval_rows": len(rows), "eval": args.eval, "pool": args.pool}
    if not args.baselines_only:
        if args.model:
            model_dir, train_seconds = args.model, 0.0
        else:
            model_dir, train_seconds = train_recipe(args.recipe, args.train, args.output, args.train_minutes,
                                                    args.epochs, args.extra)
        ranker, metrics, predictions, rank_seconds = rank_rows(model_dir, eval_data, rows, args)
        selections = {"ranker": ranker, **selections}
        report = {**metrics, **report, "aggregation": args.aggregation, "model": model_dir,
                  "train_seconds": round(train_seconds), "rank_seconds": round(rank_seconds),
                  "_predictions": predictions}
    return finish(report, selections, args)


def rank_rows(model_dir: str, eval_data, rows: list, args):
    """(ranker Selection, RankingMetrics values, predictions, seconds) of the ranker in ``model_dir``."""
    from baselines import from_picks, ranker_picks

    from blendkit.data import ScoreSpec
    from blendkit.pairranker import Ranker
    from blendkit.pairranker.batch import rank_dataset

    start = time.time()
    records, metrics, _ = rank_dataset(Ranker.from_pretrained(model_dir), eval_data, args.aggregation,
                                       ScoreSpec((args.score_key,)))
    predictions = [{"id": r["id"], "candidates": [
        {"model": c["model"], "rank": c["rank"], "ranker_score": c["ranker_score"]} for c in r["candidates"]]}
        for r in records]
    ranker = from_picks(rows, ranker_picks(rows, predictions, model_dir), args.score_key)
    ranker.pair_acc = metrics.get("pair_acc")
    ranker.details = {"spearman": metrics["spearman"]} if "spearman" in metrics else {}
    return ranker, metrics, predictions, time.time() - start


def cross_validate(args) -> dict:
    """K folds by instruction over TRAIN+EVAL: fit on K−1 folds, evaluate on the one held out; every row once."""
    from baselines import all_baselines

    rows = pooled_rows([args.train, args.eval], args.score_key)[:args.limit]
    folds = [instruction_fold(row["instruction"], args.cv) for row in rows]
    per_fold, fold_reports = [], []
    for k in range(args.cv):
        if k not in folds:
            raise SystemExit(f"--cv {args.cv}: fold {k} has no row among the {len(rows)} pooled rows; "
                             "use fewer folds or a larger --limit")
        fold_dir = os.path.join(args.output, "cv", f"fold{k}")
        train_file = write_rows(os.path.join(fold_dir, "train.jsonl.gz"), [r for r, f in zip(rows, folds) if f != k])
        eval_file = write_rows(os.path.join(fold_dir, "eval.jsonl.gz"), [r for r, f in zip(rows, folds) if f == k])
        _, train_rows = scored_rows(train_file, args.pool, args.score_key)
        eval_data, eval_rows = scored_rows(eval_file, args.pool, args.score_key)
        selections = all_baselines(train_rows, eval_rows, args.score_key)
        fold_report = {"fold": k, "train_rows": len(train_rows), "eval_rows": len(eval_rows)}
        if not args.baselines_only:
            model_dir, seconds = train_recipe(args.recipe, train_file, fold_dir, args.train_minutes, args.epochs,
                                              args.extra)
            selections = {"ranker": rank_rows(model_dir, eval_data, eval_rows, args)[0], **selections}
            fold_report["train_seconds"] = round(seconds)
        for name, selection in selections.items():
            fold_report[name] = {"judge_rank": round(float(selection.judge_rank.mean()), 3), **selection.details}
        per_fold.append(selections)
        fold_reports.append(fold_report)
    pooled = {name: concatenate([selections[name] for selections in per_fold]) for name in per_fold[0]}
    return finish({"cv_folds": args.cv, "rows": len(rows), "folds": fold_reports}, pooled, args)


def pooled_rows(paths: list[str], score_key: str) -> list[dict]:
    """Every row of ``paths`` with all its candidates, as MixInstruct records."""
    from blendkit.data import ROW_FIELDS, candidate_record, load_mixinstruct

    rows = []
    for path in paths:
        for row in load_mixinstruct(path, required_scores=[score_key]).dataset:
            rows.append({**{name: row[name] for name in ROW_FIELDS},
                         "candidates": [candidate_record(c) for c in row["candidates"]]})
    return rows


def instruction_fold(instruction: str, folds: int) -> int:
    """A stable fold for an instruction (rows with the same instruction always share a fold)."""
    return int(hashlib.sha256(instruction.encode("utf-8")).hexdigest(), 16) % folds


def write_rows(path: str, rows: list[dict]) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=1) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def concatenate(selections: list):
    """One selection over the rows of several folds (pair_acc: the folds' row-weighted mean; a fitted value
    that differs between folds: the list of the folds' values)."""
    import numpy as np
    from baselines import Selection

    sizes = [len(s.judge_rank) for s in selections]
    pair_accs = [s.pair_acc for s in selections]
    pair_acc = None if None in pair_accs else float(np.average(pair_accs, weights=sizes))
    details = {}
    for name in selections[0].details:
        values = [s.details[name] for s in selections]
        details[name] = values[0] if all(v == values[0] for v in values) else values
    return Selection(np.concatenate([s.judge_rank for s in selections]), np.concatenate([s.top1 for s in selections]),
                     pair_acc, details)


def finish(report: dict, selections: dict, args) -> dict:
    """Add each selection's summary (and the ranker's paired comparisons) to ``report``; print the table."""
    from blendkit.core.bootstrap import paired_bootstrap

    summaries = {name: summarize(selection, args) for name, selection in selections.items()}
    comparisons = {}
    if "ranker" in summaries:
        for name, value in summaries["ranker"].items():
            report.setdefault(name, value)   # RankingMetrics' own figures stay as they are
        for name in ("best_single", "prior_length"):
            result = paired_bootstrap(selections["ranker"].judge_rank, selections[name].judge_rank,
                                      resamples=args.resamples, seed=args.seed)
            comparisons[name] = {"judge_rank_difference": round(result.difference.mean, 3),
                                 "difference_95": [round(result.difference.low, 3), round(result.difference.high, 3)],
                                 "p_ranker_better": round(result.p_a_better, 4)}
        report["ranker_vs"] = comparisons
    report["baselines"] = {name: summary for name, summary in summaries.items() if name != "ranker"}
    print(table(summaries, comparisons, args))
    return report


def summarize(selection, args) -> dict:
    """judge_rank and top1 with 95% bootstrap intervals, pair_acc, and what the selection fitted."""
    from blendkit.core.bootstrap import bootstrap_interval

    out: dict = {"rows": len(selection.judge_rank)}
    for name in ("judge_rank", "top1"):
        interval = bootstrap_interval(getattr(selection, name), resamples=args.resamples, seed=args.seed)
        out[name] = round(interval.mean, 3)
        out[f"{name}_95"] = [round(interval.low, 3), round(interval.high, 3)]
    if selection.pair_acc is not None:
        out["pair_acc"] = round(selection.pair_acc, 2)
    return {**out, **selection.details}


def table(summaries: dict, comparisons: dict, args) -> str:
    """The figures as a Markdown table, then one line per paired comparison."""
    rows = next(iter(summaries.values()))["rows"]
    where = f"{args.cv}-fold CV over TRAIN+EVAL" if args.cv else os.path.basename(args.eval)
    lines = [f"\n{where}, pool {os.path.basename(str(args.pool))}, {rows} rows; [95% bootstrap interval over rows]",
             "", "| selection | judge_rank (1 = best) | top1 (judge ×100) | pair_acc % | fitted / notes |",
             "|---|---|---|---|---|"]
    figures = ("rows", "judge_rank", "judge_rank_95", "top1", "top1_95", "pair_acc")
    for name, s in summaries.items():
        notes = ", ".join(f"{k}={v}" for k, v in s.items() if k not in figures)
        pair_acc = f"{s['pair_acc']:.2f}" if "pair_acc" in s else "–"
        lines.append(f"| {name} | {s['judge_rank']:.2f} [{s['judge_rank_95'][0]:.2f}, {s['judge_rank_95'][1]:.2f}] "
                     f"| {s['top1']:.2f} [{s['top1_95'][0]:.2f}, {s['top1_95'][1]:.2f}] | {pair_acc} | {notes} |")
    for name, c in comparisons.items():
        low, high = c["difference_95"]
        lines.append(f"ranker − {name}: judge_rank {c['judge_rank_difference']:+.2f} [{low:+.2f}, {high:+.2f}] "
                     f"(paired bootstrap, lower = ranker better), P(ranker better) = {c['p_ranker_better']:.3f}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main(sys.argv[1:])

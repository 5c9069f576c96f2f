"""Is ranker A better than B beyond noise? A paired bootstrap over the evaluation rows both ranked.

    python benchmarks/compare_rankers.py runs/ranker_a runs/ranker_b
    python benchmarks/compare_rankers.py runs/ranker_a --against best_single

A and B are each a ``ranker_quality.py`` output folder (its predictions.jsonl), a predictions file
(one row a line: id + candidates with model and rank), or a baseline name of ``baselines.py``
(oracle, best_single, prior_length, longest, random; fitted on --train). Rows are the EVAL rows both
cover, with --pool's candidates, exactly as ranker_quality.py evaluated them (checked row by row).

Prints A's and B's judge_rank (lower is better) and top1 (judge ×100), the mean difference A − B with
its 95% paired-bootstrap interval, and P(A better): the share of resamples in which A's mean is better.
A difference whose interval excludes 0 is beyond the noise of these rows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from common import SHARED, scored_rows

BASELINES = ("oracle", "best_single", "prior_length", "longest", "random")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", help="ranker_quality.py output folder, predictions.jsonl, or a baseline name")
    parser.add_argument("b", nargs="?", default=None, help="the same kinds as A")
    parser.add_argument("--against", choices=BASELINES, default=None, help="compare A with this baseline")
    parser.add_argument("--train", default=os.path.join(SHARED, "train.jsonl.gz"), help="fits the baselines")
    parser.add_argument("--eval", default=os.path.join(SHARED, "val.jsonl.gz"))
    parser.add_argument("--pool", default=os.path.join(SHARED, "pool12.txt"))
    parser.add_argument("--score-key", default="judge")
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if (args.b is None) == (args.against is None):
        parser.error("give B, or --against BASELINE (one of the two)")
    b = args.b if args.b is not None else args.against
    print(json.dumps(compare(args.a, b, args)))


def compare(a: str, b: str, args) -> dict:
    """Both selections on the rows they share, and their paired comparison; prints a summary line."""
    from blendkit.core.bootstrap import bootstrap_interval, paired_bootstrap

    data, rows = scored_rows(args.eval, args.pool, args.score_key)
    ids = list(data.dataset["id"])
    predictions = {name: read_predictions(name, ids) for name in (a, b) if name not in BASELINES}
    shared = [k for k, row_id in enumerate(ids) if all(row_id in p for p in predictions.values())]
    if not shared:
        raise SystemExit(f"{a} and {b} have no EVAL row in common ({args.eval}, pool {args.pool})")
    rows, ids = [rows[k] for k in shared], [ids[k] for k in shared]
    selected = {name: selection(name, rows, ids, predictions.get(name), args) for name in (a, b)}
    result = paired_bootstrap(selected[a].judge_rank, selected[b].judge_rank, resamples=args.resamples,
                              seed=args.seed)
    top1 = paired_bootstrap(selected[a].top1, selected[b].top1, lower_is_better=False, resamples=args.resamples,
                            seed=args.seed)
    summary = {"a": a, "b": b, "rows": len(rows)}
    for side, name in (("a", a), ("b", b)):
        for metric in ("judge_rank", "top1"):
            interval = bootstrap_interval(getattr(selected[name], metric), resamples=args.resamples, seed=args.seed)
            summary[f"{side}_{metric}"] = round(interval.mean, 3)
            summary[f"{side}_{metric}_95"] = [round(interval.low, 3), round(interval.high, 3)]
    summary.update({
        "judge_rank_difference": round(result.difference.mean, 3),
        "judge_rank_difference_95": [round(result.difference.low, 3), round(result.difference.high, 3)],
        "p_a_better": round(result.p_a_better, 4),
        "top1_difference": round(top1.difference.mean, 3),
        "top1_difference_95": [round(top1.difference.low, 3), round(top1.difference.high, 3)],
        "p_a_better_top1": round(top1.p_a_better, 4)})
    verdict = "beyond noise" if result.difference.high < 0 or result.difference.low > 0 else "within noise"
    print(f"\n{len(rows)} rows. judge_rank (lower is better): A {summary['a_judge_rank']:.2f}, "
          f"B {summary['b_judge_rank']:.2f}; A − B {result.difference.mean:+.2f} "
          f"[{result.difference.low:+.2f}, {result.difference.high:+.2f}] (95% paired bootstrap, {verdict}); "
          f"P(A better) = {result.p_a_better:.3f}\ntop1 (judge ×100): A {summary['a_top1']:.2f}, "
          f"B {summary['b_top1']:.2f}; A − B {top1.difference.mean:+.2f} "
          f"[{top1.difference.low:+.2f}, {top1.difference.high:+.2f}]\n")
    return summary


def selection(name: str, rows: list, ids: list[str], predictions: dict | None, args):
    """The Selection of a baseline (fitted on --train) or of a predictions file, on ``rows``."""
    import baselines

    if predictions is None:
        _, train_rows = scored_rows(args.train, args.pool, args.score_key)
        return baselines.all_baselines(train_rows, rows, args.score_key)[name]
    try:
        picks = baselines.ranker_picks(rows, [predictions[row_id] for row_id in ids], name)
    except ValueError as error:
        raise SystemExit(str(error)) from None
    return baselines.from_picks(rows, picks, args.score_key)


def read_predictions(source: str, eval_ids: list[str]) -> dict[str, dict]:
    """id → prediction of a predictions.jsonl (or the one in a ranker_quality.py output folder)."""
    path = os.path.join(source, "predictions.jsonl") if os.path.isdir(source) else source
    if not os.path.isfile(path):
        raise SystemExit(f"{source}: not a predictions file, a folder holding predictions.jsonl, nor a baseline "
                         f"name ({', '.join(BASELINES)})")
    known = set(eval_ids)
    predictions = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            try:
                prediction = json.loads(line)
                row_id = prediction["id"]
            except (json.JSONDecodeError, TypeError, KeyError) as error:
                raise SystemExit(f"{path}, line {number}: not a prediction row with an 'id' ({error})") from None
            if row_id not in known:
                raise SystemExit(f"{path}, line {number}: row {row_id!r} is not in the EVAL data; "
                                 "compare on the --eval and --pool the predictions were made on")
            predictions[row_id] = prediction
    return predictions


if __name__ == "__main__":
    main(sys.argv[1:])

"""How often a cheap knockout picks the same candidate as the full comparison matrix (``max_logits``).

    flock /tmp/bench.lock .venv/bin/python benchmarks/knockout_agreement.py --model runs/rq_bt/model
    flock /tmp/bench.lock .venv/bin/python benchmarks/knockout_agreement.py --model DIR --verify   # + a real run

Computing every comparison of every EVAL row is the expensive part (N·(N-1) forward passes a row), so
it is done once and cached: the one-way logits ``L[i, j]`` (candidate i in the first slot) go to
``--cache`` (default ``runs/knockout_agreement/<model path with _>.pt``), and ``M = (L - Lᵀ) / 2`` is the
order-averaged matrix that ``max_logits`` sums. Every strategy is then replayed offline with a compare
callback that reads ``M``, so trying a design costs milliseconds. Per strategy the report gives:

- ``same_top1_pct``: rows whose pick is the full matrix's pick (ties in ``max_logits`` go to the first);
- ``passes_per_row``: forward passes per row (two per compared pair: both orders); ``rounds``: compare
  calls, i.e. batches that all rows advance through together;
- ``judge_rank``: mean rank under the judge of the pick (1 = best of the row; ties share the mean rank),
  next to ``judge_rank_full`` for the full matrix's pick.

``--verify`` also ranks the rows for real with ``Ranker.rank(..., aggregation="knockout")`` and counts
the rows whose pick differs from the replay of the default ``knockout`` (only near-ties in the logits,
where batch composition changes the last digits, may differ).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time

import torch
from common import ROOT, SHARED

from blendkit.pairranker.aggregation import (
    best_first,
    estimate_row_sums,
    final_round_pairs,
    knockout,
    knockout_chain,
    knockout_comparisons,
    max_logits,
)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a trained ranker folder")
    parser.add_argument("--eval", default=os.path.join(SHARED, "val.jsonl.gz"))
    parser.add_argument("--pool", default=os.path.join(SHARED, "pool12.txt"))
    parser.add_argument("--score-key", default="judge")
    parser.add_argument("--cache", default=None, help="where the one-way logits are kept (computed if missing)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N rows (smoke tests)")
    parser.add_argument("--rows-per-batch", type=int, default=8)
    parser.add_argument("--verify", action="store_true", help="also rank with the real knockout and compare")
    parser.add_argument("--output", default=None, help="write the report here as JSON")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be a positive number of rows, got {args.limit}")
    cache = args.cache or os.path.join(ROOT, "runs", "knockout_agreement",
                                       os.path.normpath(args.model).strip(os.sep).replace(os.sep, "_") + ".pt")

    from blendkit.data import load_mixinstruct
    from blendkit.pairranker import Ranker

    data = load_mixinstruct(args.eval, pool=args.pool, required_scores=[args.score_key], limit=args.limit)
    rows = list(data.dataset)
    ranker = Ranker.from_pretrained(args.model)
    logits = one_way_logits(ranker, rows, args, cache)
    matrices = [(lg - lg.T) / 2 for lg in logits]
    judge = [torch.tensor([c["scores"][args.score_key] for c in row["candidates"]], dtype=torch.float64)
             for row in rows]

    report = {"model": args.model, "rows": len(rows),
              "candidates_per_row": sorted({len(row["candidates"]) for row in rows}),
              "strategies": {name: replay(strategy, matrices, judge) for name, strategy in STRATEGIES.items()}}
    if args.verify:
        report["verify"] = verify(ranker, rows, matrices)
    print(table(report["strategies"]))
    print(json.dumps(report))
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)


# --------------------------------------------------------------------------------------------- #
def ranker_inputs(rows: list[dict]) -> dict:
    """``Ranker.rank``'s inputs for rows, with the candidates' source models (a model prior needs them)."""
    return {"instructions": [row["instruction"] for row in rows], "inputs": [row["input"] for row in rows],
            "candidates": [[c["text"] for c in row["candidates"]] for row in rows],
            "models": [[c["model"] for c in row["candidates"]] for row in rows]}


def one_way_logits(ranker, rows: list[dict], args, cache: str) -> list[torch.Tensor]:
    """``L[i, j]`` for every ordered pair of every row, from ``cache`` when it was made for these rows."""
    key = {"model": os.path.abspath(args.model), "eval": os.path.abspath(args.eval),
           "pool": os.path.abspath(args.pool), "ids": [row["id"] for row in rows]}
    if os.path.exists(cache):
        saved = torch.load(cache, weights_only=True)
        if saved["key"] == key:
            print(f"one-way logits from {cache}", file=sys.stderr)
            return saved["logits"]
        print(f"{cache} was made for other rows or another model: computing again", file=sys.stderr)
    start = time.perf_counter()
    logits = []
    for first in range(0, len(rows), args.rows_per_batch):
        chunk = rows[first:first + args.rows_per_batch]
        encoded = ranker.encode(**ranker_inputs(chunk))
        pairs = [(r, i, j) for r, row in enumerate(chunk) for i in range(len(row["candidates"]))
                 for j in range(len(row["candidates"])) if i != j]
        values = ranker.pair_logits(encoded, pairs).tolist()
        matrices = [torch.zeros(len(row["candidates"]), len(row["candidates"])) for row in chunk]
        for (r, i, j), value in zip(pairs, values):
            matrices[r][i, j] = value
        logits += matrices
        print(f"{len(logits)}/{len(rows)} rows, {time.perf_counter() - start:.0f} s", file=sys.stderr)
    os.makedirs(os.path.dirname(os.path.abspath(cache)), exist_ok=True)
    torch.save({"key": key, "logits": logits}, cache)
    return logits


# --------------------------------------------------------------------------------------------- #
# Strategies: each has knockout's signature, (num_candidates, compare) -> one score vector per row. Apart from
# "sequential (before)", each is a first stage that connects every candidate (num_candidates, compare) -> the
# observed logits per row, then ``final`` pairs per row chosen by ``select`` (in ``final_rounds`` rounds),
# scored by the filled-in row sums. The chain stage is knockout's own (`knockout_chain`).

def sequential(num_candidates, compare):
    """The former knockout: the champion meets each next candidate; only the champion scores high."""
    champions = [0] * len(num_candidates)
    for challenger in range(1, max(num_candidates, default=0)):
        live = [r for r, n in enumerate(num_candidates) if challenger < n]
        for r, logit in zip(live, compare([(r, challenger, champions[r]) for r in live]).tolist()):
            champions[r] = challenger if logit > 0 else champions[r]
    return [torch.nn.functional.one_hot(torch.tensor(c), n).float() for c, n in zip(champions, num_candidates)]


def star_stage(num_candidates, compare):
    """One round: every candidate meets candidate 0."""
    observed = [{} for _ in num_candidates]
    play(compare, observed, [(r, i, 0) for r, n in enumerate(num_candidates) for i in range(1, n)])
    return observed


def bracket_stage(num_candidates, compare):
    """Single elimination, about log2(N) rounds: neighbours meet, winners go on (an odd one out waits)."""
    observed = [{} for _ in num_candidates]
    alive = [list(range(n)) for n in num_candidates]
    while any(len(a) > 1 for a in alive):
        triples = [(r, a[k + 1], a[k]) for r, a in enumerate(alive) for k in range(0, len(a) - 1, 2)]
        winners = iter(play(compare, observed, triples))
        for r, a in enumerate(alive):
            alive[r] = [(a[k + 1] if next(winners) > 0 else a[k]) if k + 1 < len(a) else a[k]
                        for k in range(0, len(a), 2)]
    return observed


def round_robin_pairs(scores, observed, count):
    """Unseen pairs among the leaders by ``scores``: the top 2, then the top 3, ... (a final round-robin)."""
    order = best_first(scores)
    picked = []
    for last in range(1, len(order)):
        for first in range(last):
            pair = (order[first], order[last])
            if len(picked) < count and pair not in observed and pair[::-1] not in observed:
                picked.append(pair)
    return picked


def staged(num_candidates, compare, first=knockout_chain, final=4, select=final_round_pairs, final_rounds=1):
    observed = first(num_candidates, compare)
    for round_ in range(final_rounds):
        share = final // final_rounds + (round_ < final % final_rounds)
        play(compare, observed, [(r, i, j) for r, n in enumerate(num_candidates)
                                 for i, j in select(estimate_row_sums(n, observed[r]), observed[r], share)])
    return [estimate_row_sums(n, seen) for n, seen in zip(num_candidates, observed)]


def swiss(num_candidates, compare, comparisons_per_row: int = 15):
    """Rounds of disjoint pairs, neighbours by estimated row sum (first round: i against i + N/2), no repeats."""
    observed = [{} for _ in num_candidates]
    play(compare, observed, [(r, i, i + n // 2) for r, n in enumerate(num_candidates) for i in range(n // 2)])
    while True:
        triples = []
        for r, n in enumerate(num_candidates):
            order = best_first(estimate_row_sums(n, observed[r]))
            budget = min(comparisons_per_row, n * (n - 1) // 2) - len(observed[r])
            while len(order) > 1 and budget > 0:
                i = order.pop(0)
                j = next((j for j in order if (i, j) not in observed[r] and (j, i) not in observed[r]), None)
                if j is not None:
                    order.remove(j)
                    triples.append((r, i, j))
                    budget -= 1
        if not triples:
            return [estimate_row_sums(n, seen) for n, seen in zip(num_candidates, observed)]
        play(compare, observed, triples)


def play(compare, observed: list[dict], triples: list[tuple[int, int, int]]) -> list[float]:
    """One compare call; records and returns the logits."""
    if not triples:
        return []
    logits = compare(triples).tolist()
    for (r, i, j), logit in zip(triples, logits):
        observed[r][(i, j)] = logit
    return logits


STRATEGIES = {
    "sequential (before)": sequential,
    "knockout (default)": knockout,
    **{f"chain final={f}": functools.partial(staged, final=f) for f in (0, 2, 3, 5, 6)},
    "chain final=4 round-robin": functools.partial(staged, select=round_robin_pairs),
    "chain final=4 in 2 rounds": functools.partial(staged, final_rounds=2),
    "chain final=4 in 4 rounds": functools.partial(staged, final_rounds=4),
    "star": functools.partial(staged, first=star_stage, final=0),
    "star final=4": functools.partial(staged, first=star_stage),
    "star final=4 in 2 rounds": functools.partial(staged, first=star_stage, final_rounds=2),
    "bracket final=4": functools.partial(staged, first=bracket_stage),
    "bracket final=4 in 2 rounds": functools.partial(staged, first=bracket_stage, final_rounds=2),
    "swiss 15 pairs": swiss,
}


# --------------------------------------------------------------------------------------------- #
def replay(strategy, matrices: list[torch.Tensor], judge: list[torch.Tensor]) -> dict:
    """Run ``strategy`` on the cached matrices and score its picks against the full matrix's."""
    from blendkit.pairranker.metrics import judge_rank

    calls, pairs = [], 0

    def compare(triples):
        nonlocal pairs
        calls.append(len(triples))
        seen = {}
        for r, i, j in triples:
            if (r, min(i, j), max(i, j)) in seen:
                raise AssertionError(f"the strategy compared pair {(i, j)} of row {r} twice in one call")
            seen[(r, min(i, j), max(i, j))] = True
        pairs += len(triples)
        return torch.tensor([float(matrices[r][i, j]) for r, i, j in triples])

    scores = strategy([m.shape[0] for m in matrices], compare)
    picks = [best_first(s)[0] for s in scores]
    full = [best_first(max_logits(m))[0] for m in matrices]
    rows = len(matrices)
    return {"same_top1_pct": round(100 * sum(p == f for p, f in zip(picks, full)) / rows, 1),
            "passes_per_row": round(2 * pairs / rows, 2), "rounds": len(calls),
            "judge_rank": round(sum(float(judge_rank(j.numpy(), p)) for j, p in zip(judge, picks)) / rows, 3),
            "judge_rank_full": round(sum(float(judge_rank(j.numpy(), f)) for j, f in zip(judge, full)) / rows, 3)}


def verify(ranker, rows: list[dict], matrices: list[torch.Tensor]) -> dict:
    """The real ``aggregation="knockout"`` against its replay on the cached matrices."""
    start = time.perf_counter()
    results = ranker.rank(**ranker_inputs(rows), aggregation="knockout")
    seconds = time.perf_counter() - start
    replayed = knockout([m.shape[0] for m in matrices],
                        lambda triples: torch.tensor([float(matrices[r][i, j]) for r, i, j in triples]))
    differ = [k for k, (res, s) in enumerate(zip(results, replayed)) if res.best != best_first(s)[0]]
    full = [best_first(max_logits(m))[0] for m in matrices]
    return {"rows_where_real_differs_from_replay": len(differ), "differing_rows": differ,
            "real_same_top1_pct": round(100 * sum(r.best == f for r, f in zip(results, full)) / len(rows), 1),
            "expected_passes": sum(2 * knockout_comparisons(m.shape[0]) for m in matrices),
            "reported_passes": sum(r.comparisons for r in results), "seconds": round(seconds, 1)}


def table(strategies: dict) -> str:
    lines = [f"{'strategy':30s} {'same top-1 %':>12s} {'passes/row':>10s} {'rounds':>6s} {'judge_rank':>10s}"]
    for name, s in strategies.items():
        lines.append(f"{name:30s} {s['same_top1_pct']:12.1f} {s['passes_per_row']:10.2f} {s['rounds']:6d} "
                     f"{s['judge_rank']:10.3f}")
    first = next(iter(strategies.values()), None)
    if first:
        lines.append(f"{'full matrix (max_logits)':30s} {100.0:12.1f} {'':17s} {first['judge_rank_full']:10.3f}")
    return "\n".join(lines)


if __name__ == "__main__":
    main(sys.argv[1:])

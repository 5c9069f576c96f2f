"""What a ranker is measured against, kept per row so that any two can be compared on the same rows.

A *selection* is one way of choosing a candidate in each evaluation row; its per-row judge_rank and
top1 (see ``blendkit.pairranker.metrics``) are what the bootstrap resamples. The reference selections:

- ``oracle``: the judge's own best candidate;
- ``best_single``: always the model with the best mean judge_rank on TRAIN; in a row without it, the
  next model in that train order that the row has;
- ``prior_length``: score = −(the model's mean judge_rank on TRAIN) + a·log(1 + characters), with ``a``
  chosen on TRAIN from a small grid. Two numbers (issue 13 §2): a learned ranker that cannot beat this
  rule is not worth shipping. It lives here, not in the library, on purpose;
- ``longest``: the answer with the most characters;
- ``random``: a uniform pick, as its exact expectation (judge_rank (N+1)/2, top1 the row's mean score).

A row is the list of its candidates ({"model", "text", "scores": {key: float}}), as in MixInstruct.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from blendkit.pairranker.metrics import judge_rank

Row = list[dict]
LENGTH_WEIGHTS = tuple(0.25 * k for k in range(25))   # a in 0, 0.25, …, 6 for prior_length


@dataclass
class Selection:
    """One selection's outcome on the evaluation rows, row by row."""

    judge_rank: np.ndarray          # the pick's rank under the judge (1 = best, ties share the mean rank)
    top1: np.ndarray                # the pick's judge score ×100
    pair_acc: float | None = None   # % of non-tied pairs ordered like the judge, for rules that score every answer
    details: dict = field(default_factory=dict)   # what was fitted on TRAIN


def scores_of(row: Row, key: str) -> np.ndarray:
    return np.array([c["scores"][key] for c in row], dtype=np.float64)


def from_picks(rows: list[Row], picks: list[int], key: str, **details) -> Selection:
    """The selection that picks candidate ``picks[i]`` in row i."""
    scores = [scores_of(row, key) for row in rows]
    return Selection(np.array([float(judge_rank(s, p)) for s, p in zip(scores, picks)]),
                     np.array([100 * s[p] for s, p in zip(scores, picks)]), details=details)


def from_scores(rows: list[Row], rule_scores: list[np.ndarray], key: str, tie_eps: float = 1e-6,
                **details) -> Selection:
    """The selection that picks each row's highest ``rule_scores`` (the first on ties), with its pair_acc."""
    selection = from_picks(rows, [int(np.argmax(s)) for s in rule_scores], key, **details)
    selection.pair_acc = pair_accuracy(rows, rule_scores, key, tie_eps)
    return selection


def pair_accuracy(rows: list[Row], rule_scores: list[np.ndarray], key: str, tie_eps: float = 1e-6) -> float:
    """% of candidate pairs that the rule orders like the judge, over pairs whose judge scores differ by more
    than ``tie_eps`` (as ``RankingMetrics``) and that the rule does not tie (it has no opinion there)."""
    correct = total = 0
    for row, rule in zip(rows, rule_scores):
        judge = scores_of(row, key)
        d_judge, d_rule = judge[:, None] - judge[None, :], rule[:, None] - rule[None, :]
        counted = np.triu(np.ones_like(d_judge, dtype=bool), k=1) & (np.abs(d_judge) > tie_eps) & (d_rule != 0)
        correct += int(((d_rule > 0) == (d_judge > 0))[counted].sum())
        total += int(counted.sum())
    return 100 * correct / max(total, 1)


def oracle(rows: list[Row], key: str) -> Selection:
    return from_picks(rows, [int(np.argmax(scores_of(row, key))) for row in rows], key)


def random_pick(rows: list[Row], key: str) -> Selection:
    """A uniform pick in expectation: the mean of a row's ranks is (N+1)/2 with or without ties."""
    return Selection(np.array([(len(row) + 1) / 2 for row in rows]),
                     np.array([100 * scores_of(row, key).mean() for row in rows]), pair_acc=50.0)


def longest(rows: list[Row], key: str) -> Selection:
    return from_scores(rows, [np.array([len(c["text"]) for c in row], dtype=np.float64) for row in rows], key)


def model_judge_ranks(rows: list[Row], key: str) -> dict[str, float]:
    """Each model's mean judge_rank over the rows it answers (the per-model prior, fitted on TRAIN)."""
    ranks: dict[str, list[float]] = {}
    for row in rows:
        scores = scores_of(row, key)
        for k, cand in enumerate(row):
            ranks.setdefault(cand["model"], []).append(float(judge_rank(scores, k)))
    return {model: float(np.mean(values)) for model, values in ranks.items()}


def best_single(train_rows: list[Row], rows: list[Row], key: str) -> Selection:
    """Always the best model on TRAIN by mean judge_rank; where a row lacks it, the next best it has (a
    model unseen on TRAIN comes after every seen one)."""
    priors = model_judge_ranks(train_rows, key)
    order = sorted(priors, key=lambda model: (priors[model], model))
    position = {model: k for k, model in enumerate(order)}
    picks = [min(range(len(row)), key=lambda k: (position.get(row[k]["model"], len(order)), k)) for row in rows]
    fallback_rows = sum(row[pick]["model"] != order[0] for row, pick in zip(rows, picks))
    return from_picks(rows, picks, key, model=order[0], train_judge_rank=round(priors[order[0]], 3),
                      next_models=order[1:3], fallback_rows=fallback_rows)


def prior_length_scores(row: Row, priors: dict[str, float], a: float) -> np.ndarray:
    """−prior + a·log(1 + characters) per candidate; an unseen model gets the mean prior of the seen ones."""
    unseen = float(np.mean(list(priors.values())))
    return np.array([-priors.get(c["model"], unseen) + a * np.log1p(len(c["text"])) for c in row])


def prior_length(train_rows: list[Row], rows: list[Row], key: str,
                 weights: tuple[float, ...] = LENGTH_WEIGHTS) -> Selection:
    """The two-number rule: priors and the length weight ``a`` (the grid's best mean judge_rank on TRAIN,
    the smallest on ties) both fitted on TRAIN, then applied to ``rows``."""
    priors = model_judge_ranks(train_rows, key)

    def train_judge_rank(a: float) -> float:
        return float(from_scores(train_rows, [prior_length_scores(r, priors, a) for r in train_rows], key)
                     .judge_rank.mean())

    fit = {a: train_judge_rank(a) for a in weights}
    a = min(weights, key=lambda w: (fit[w], w))
    return from_scores(rows, [prior_length_scores(row, priors, a) for row in rows], key, a=a,
                       train_judge_rank=round(fit[a], 3))


def all_baselines(train_rows: list[Row], rows: list[Row], key: str) -> dict[str, Selection]:
    """Every reference selection on ``rows``, those that learn anything fitted on ``train_rows``."""
    return {"oracle": oracle(rows, key), "best_single": best_single(train_rows, rows, key),
            "prior_length": prior_length(train_rows, rows, key), "longest": longest(rows, key),
            "random": random_pick(rows, key)}


def ranker_picks(rows: list[Row], predictions: list[dict], source: str) -> list[int]:
    """Index of the rank-1 candidate of each prediction (``{"id", "candidates": [{"model", "rank"}]}``), checked
    against the evaluation row it belongs to: same candidates' models, in the same order."""
    picks = []
    for row, prediction in zip(rows, predictions):
        models = [c["model"] for c in prediction["candidates"]]
        if models != [c["model"] for c in row]:
            raise ValueError(f"{source}: row {prediction['id']!r} has candidates {models}, the evaluation data "
                             f"{[c['model'] for c in row]}; rank and compare with the same --eval and --pool")
        firsts = [k for k, c in enumerate(prediction["candidates"]) if c["rank"] == 1]
        if len(firsts) != 1:
            raise ValueError(f"{source}: row {prediction['id']!r} has {len(firsts)} candidates of rank 1, expected 1")
        picks.append(firsts[0])
    return picks

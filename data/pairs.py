"""Build training pairs (i, j, label) from one row's candidate scores.

``label`` is P(candidate i is better than j): 1.0, 0.0, or 0.5 for a tie kept with ``ties="half"``.
Which of the two goes first is random, so the ranker cannot learn a position shortcut.
"""

from __future__ import annotations

from itertools import combinations
from typing import Literal

import numpy as np
from scipy.stats import rankdata

from ..core.errors import ConfigError

Strategy = Literal["all", "random", "top_bottom", "rank_distance"]
STRATEGIES = ("all", "random", "top_bottom", "rank_distance")
Ties = Literal["skip", "half"]


def build_pairs(
    scores: np.ndarray,
    strategy: Strategy = "random",
    k: int = 8,
    ties: Ties = "skip",
    tie_eps: float = 1e-6,
    rng: np.random.Generator | None = None,
) -> list[tuple[int, int, float]]:
    """Pairs of candidate indices with labels.

    Strategies:
        ``all``: every unordered pair (N·(N-1)/2).
        ``random``: ``k`` distinct unordered pairs drawn uniformly (all of them if fewer exist).
        ``top_bottom``: the i-th best against the i-th worst, for i < k (the clearest contrasts).
        ``rank_distance``: ``k`` distinct pairs drawn with probability proportional to how far apart the two
        are in the row's order (tied scores share their mean rank). A judge's scores often differ only
        in a late decimal between neighbours, whose order is close to noise; far-apart pairs carry a
        clear label, yet every pair keeps some chance.

    Ties (|score_i - score_j| <= tie_eps) are dropped (``skip``) or labelled 0.5 (``half``);
    with ``skip`` the random strategy draws only among non-tied pairs, so k is still met when possible.
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"pair_strategy: expected one of {STRATEGIES}, got {strategy!r}.")
    if ties not in ("skip", "half"):
        raise ConfigError(f"ties: expected 'skip' or 'half', got {ties!r}.")
    if k < 1:
        raise ConfigError(f"pairs_per_row: must be >= 1, got {k}.")
    rng = rng if rng is not None else np.random.default_rng()
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)

    def tied(i: int, j: int) -> bool:
        return abs(scores[i] - scores[j]) <= tie_eps

    if strategy == "top_bottom":
        order = np.argsort(-scores, kind="stable")
        candidates = [(int(order[t]), int(order[n - 1 - t])) for t in range(min(k, n // 2))]
    else:
        candidates = list(combinations(range(n), 2))
        if ties == "skip":
            candidates = [p for p in candidates if not tied(*p)]
        if strategy == "random" and len(candidates) > k:
            chosen = rng.choice(len(candidates), size=k, replace=False)
            candidates = [candidates[c] for c in sorted(chosen)]
        elif strategy == "rank_distance" and len(candidates) > k:
            ranks = rankdata(-scores)
            distance = np.array([abs(ranks[i] - ranks[j]) for i, j in candidates])
            drawable = np.flatnonzero(distance > 0)        # tied pairs kept with ties="half" are never drawn
            size = min(k, len(drawable))
            chosen = rng.choice(drawable, size=size, replace=False, p=distance[drawable] / distance[drawable].sum())
            candidates = [candidates[c] for c in sorted(chosen)]

    pairs = []
    for i, j in candidates:
        if tied(i, j):
            if ties == "skip":
                continue
            label = 0.5
        else:
            label = 1.0 if scores[i] > scores[j] else 0.0
        if rng.random() < 0.5:
            i, j, label = j, i, 1.0 - label
        pairs.append((i, j, label))
    return pairs

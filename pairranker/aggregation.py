"""From pairwise comparisons to a ranking.

``M[i, j]`` is the logit that candidate i beats j, already averaged over both input orders
(``(logit(i, j) - logit(j, i)) / 2``), so ``M`` is antisymmetric with a zero diagonal.

- ``max_logits``: score_i = sum_j M[i, j]. Uses every comparison's confidence (LLM-Blender's default).
- ``max_wins``: score_i = number of j with M[i, j] > 0; ties broken by the logit sum.
- ``knockout``: N-1 comparisons instead of N·(N-1)/2: the current champion meets each next
  candidate and the winner stays. Finds a top-1 cheaply; the rest of the order is only partial
  (later-eliminated candidates rank higher), so use it for best-of-n, not for a full ranking.
"""

from __future__ import annotations

from typing import Callable, Literal, Sequence

import torch

Aggregation = Literal["max_logits", "max_wins", "knockout"]
AGGREGATIONS = ("max_logits", "max_wins", "knockout")


def max_logits(matrix: torch.Tensor) -> torch.Tensor:
    return matrix.sum(dim=1)


def max_wins(matrix: torch.Tensor) -> torch.Tensor:
    wins = (matrix > 0).sum(dim=1).to(matrix.dtype)
    n = matrix.shape[0]
    # sigmoid(.) lies in (0, 1): it orders candidates with equal wins without ever overturning a win.
    return wins + torch.sigmoid(matrix.sum(dim=1) / max(n, 1))


def knockout(
    num_candidates: Sequence[int], compare: Callable[[list[tuple[int, int, int]]], torch.Tensor]
) -> list[torch.Tensor]:
    """Run knockout for several rows at once; returns one score vector per row.

    ``compare`` takes (row, challenger, champion) triples and returns the order-averaged logits
    that the challenger wins. All rows advance one round per call, so each round is one batch.
    """
    champions = [0] * len(num_candidates)
    scores = [torch.zeros(n) for n in num_candidates]
    for round_ in range(1, max(num_candidates, default=0)):
        live = [r for r, n in enumerate(num_candidates) if round_ < n]
        logits = compare([(r, round_, champions[r]) for r in live])
        for r, logit in zip(live, logits.tolist()):
            loser, winner = (champions[r], round_) if logit > 0 else (round_, champions[r])
            # Eliminated in round t scores t (+ how close it came); the final champion scores highest.
            scores[r][loser] = round_ + torch.sigmoid(torch.tensor(-abs(logit))).item()
            champions[r] = winner
    for r, n in enumerate(num_candidates):
        scores[r][champions[r]] = float(n)
    return scores


def ranks_from_scores(scores: torch.Tensor) -> list[int]:
    """1-based ranks (1 = best) for each candidate, in input order; equal scores keep input order."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    ranks = [0] * len(scores)
    for position, index in enumerate(order, start=1):
        ranks[index] = position
    return ranks

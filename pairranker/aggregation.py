"""From pairwise comparisons to a ranking.

``M[i, j]`` is the logit that candidate i beats j, already averaged over both input orders
(``(logit(i, j) - logit(j, i)) / 2``), so ``M`` is antisymmetric with a zero diagonal.

- ``max_logits``: score_i = sum_j M[i, j]. Uses every comparison's confidence (LLM-Blender's default).
- ``max_wins``: score_i = number of j with M[i, j] > 0; ties broken by the logit sum.
- ``knockout``: about N + 3 of the N·(N-1)/2 comparisons (2N + 6 forward passes instead of N·(N-1)),
  aiming at the same top-1 as ``max_logits``. A sequential knockout (the champion meets each next
  candidate) is followed by a final round in which the two leading candidates meet each other and
  common opponents; the scores are then ``max_logits`` of the matrix with its missing entries filled in
  by a least-squares fit of additive strengths (``M[i, j] ≈ s_i - s_j``) to the entries that were seen.
  The pick is what matters; the rest of the order is an estimate of the full-matrix order, reliable
  near the top (where the comparisons went) and rough below.

Why not simply keep the last champion: ``max_logits`` sums a candidate's margins against *everyone*,
while a knockout champion only won its last few head-to-head matches. When two strong candidates are
close, the one with the larger total margin is often not the one that won their single meeting; filling
in the matrix and summing rows corrects that, and the final round spends its comparisons exactly where
the two contenders' row sums are still uncertain.
"""

from __future__ import annotations

from typing import Callable, Literal, Sequence

import torch

Aggregation = Literal["max_logits", "max_wins", "knockout"]
AGGREGATIONS = ("max_logits", "max_wins", "knockout")

# Final-round comparisons per row after the N - 1 knockout matches: N + 3 comparisons, 2N + 6 passes.
KNOCKOUT_FINAL_COMPARISONS = 4

Compare = Callable[[list[tuple[int, int, int]]], torch.Tensor]


def max_logits(matrix: torch.Tensor) -> torch.Tensor:
    return matrix.sum(dim=1)


def max_wins(matrix: torch.Tensor) -> torch.Tensor:
    wins = (matrix > 0).sum(dim=1).to(matrix.dtype)
    n = matrix.shape[0]
    # sigmoid(.) lies in (0, 1): it orders candidates with equal wins without ever overturning a win.
    return wins + torch.sigmoid(matrix.sum(dim=1) / max(n, 1))


def estimate_row_sums(num_candidates: int, observed: dict[tuple[int, int], float]) -> torch.Tensor:
    """``max_logits`` scores of a partly observed matrix.

    ``observed`` maps (i, j) to ``M[i, j]`` (either orientation, each pair once). Missing entries are
    ``s_i - s_j`` with the strengths ``s`` that fit the observed entries best in least squares; where the
    comparison graph splits into parts, each part's strengths are centred on zero (the parts are taken as
    equally strong on average; :func:`knockout` always leaves one connected graph). Seen entries enter the
    sum as they are, so a fully observed matrix gives exactly ``max_logits``.
    """
    n = num_candidates
    laplacian = torch.zeros(n, n, dtype=torch.float64)
    target = torch.zeros(n, dtype=torch.float64)
    for (i, j), logit in observed.items():
        laplacian[i, i] += 1
        laplacian[j, j] += 1
        laplacian[i, j] -= 1
        laplacian[j, i] -= 1
        target[i] += logit
        target[j] -= logit
    # The Laplacian is singular (shifting every strength changes nothing); the pseudo-inverse picks the
    # centred solution, per connected part.
    strengths = torch.linalg.pinv(laplacian, hermitian=True) @ target
    filled = strengths[:, None] - strengths[None, :]
    for (i, j), logit in observed.items():
        filled[i, j], filled[j, i] = logit, -logit
    return filled.sum(dim=1).float()


def knockout_comparisons(num_candidates: int, final: int = KNOCKOUT_FINAL_COMPARISONS) -> int:
    """How many pairs :func:`knockout` compares in a row of ``num_candidates`` (each costs two passes)."""
    n = num_candidates
    return min(n - 1 + final, n * (n - 1) // 2) if n > 1 else 0


def final_round_pairs(scores: torch.Tensor, observed: dict[tuple[int, int], float], count: int
                      ) -> list[tuple[int, int]]:
    """Up to ``count`` unseen pairs that most sharpen the choice between the two leaders by ``scores``.

    Their meeting counts twice in the difference of their row sums, so it comes first; then each leader
    meets the strongest opponents it has not met, alternately, so that the difference rests on common
    opponents; small rows with nothing left of that fall back to any unseen pair, strongest first.
    """
    order = best_first(scores)
    seen = {frozenset(pair) for pair in observed}
    picked: list[tuple[int, int]] = []

    def add(i: int, j: int) -> None:
        if len(picked) < count and frozenset((i, j)) not in seen:
            seen.add(frozenset((i, j)))
            picked.append((i, j))

    if len(order) >= 2:
        leader, runner_up = order[:2]
        add(runner_up, leader)
        for opponent in order[2:]:
            add(leader, opponent)
            add(runner_up, opponent)
    for position, i in enumerate(order):
        for j in order[position + 1:]:
            add(i, j)
    return picked


def knockout(num_candidates: Sequence[int], compare: Compare, final: int = KNOCKOUT_FINAL_COMPARISONS
             ) -> list[torch.Tensor]:
    """Knockout for several rows at once; returns one score vector per row (estimated ``max_logits`` scores).

    ``compare`` takes (row, i, j) triples and returns the order-averaged logits that i beats j. All rows
    advance together, one ``compare`` call per round: N - 1 knockout rounds, then one final round of up to
    ``final`` pairs per row (see :func:`final_round_pairs`), :func:`knockout_comparisons` pairs in all.
    """
    if final < 0:
        raise ValueError(f"final must be >= 0 final-round comparisons per row, got {final}")
    sizes = list(num_candidates)
    observed = knockout_chain(sizes, compare)
    triples = []
    for r, n in enumerate(sizes):
        budget = knockout_comparisons(n, final) - len(observed[r])
        pairs = final_round_pairs(estimate_row_sums(n, observed[r]), observed[r], budget)
        triples += [(r, i, j) for i, j in pairs]
    if triples:
        for (r, i, j), logit in zip(triples, compare(triples).tolist()):
            observed[r][(i, j)] = logit
    return [estimate_row_sums(n, seen) for n, seen in zip(sizes, observed)]


def knockout_chain(num_candidates: Sequence[int], compare: Compare) -> list[dict[tuple[int, int], float]]:
    """:func:`knockout`'s first stage: in N - 1 rounds the champion (the winner so far, at first candidate 0)
    meets each next candidate. Returns each row's observed logits {(challenger, champion): M[challenger,
    champion]}: N - 1 entries that connect every candidate."""
    sizes = list(num_candidates)
    observed: list[dict[tuple[int, int], float]] = [{} for _ in sizes]
    champions = [0] * len(sizes)
    for challenger in range(1, max(sizes, default=0)):
        live = [r for r, n in enumerate(sizes) if challenger < n]
        logits = compare([(r, challenger, champions[r]) for r in live])
        for r, logit in zip(live, logits.tolist()):
            observed[r][(challenger, champions[r])] = logit
            if logit > 0:
                champions[r] = challenger
    return observed


def best_first(scores: torch.Tensor) -> list[int]:
    """Candidate indices, highest score first; equal scores keep input order."""
    return sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))


def ranks_from_scores(scores: torch.Tensor) -> list[int]:
    """1-based ranks (1 = best) for each candidate, in input order; equal scores keep input order."""
    order = best_first(scores)
    ranks = [0] * len(scores)
    for position, index in enumerate(order, start=1):
        ranks[index] = position
    return ranks

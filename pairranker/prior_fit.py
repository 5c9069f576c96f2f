"""A starting point for the model prior: Bradley–Terry strengths of the source models on the training data.

A ranker with a model prior scores a candidate as text score + offset[model]; its pair logit is the
difference of two such scores. Before the text part has learned anything, the best offsets are the
models' Bradley–Terry strengths: the s that maximise Σ_pairs log σ(s_winner − s_loser) over every
decided pair of candidates within a row. They are in the logit's own units, so a ranker whose prior
starts there begins as the "which model wrote it" rule and trains its text part on what that rule
leaves unexplained. Fitted from win counts (models × models), so it takes well under a second.

`fitted_rule` adds the candidates' length: strengths and one length weight a fitted together on every
decided pair, Σ log σ(s_winner − s_loser + a·(x_winner − x_loser)) with x the length feature. That is
the "which model, how long" rule as a ranker's length-aware prior (``prior_length``) can hold it exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def win_counts(targets: Sequence[np.ndarray], models: Sequence[Sequence[str | None]], names: Sequence[str],
               tie_eps: float = 1e-6) -> np.ndarray:
    """wins[a, b]: how often a candidate of names[a] beat one of names[b] in the same row (by more than
    ``tie_eps``). Candidates of unnamed or unlisted models are left out."""
    index = {name: i for i, name in enumerate(names)}
    wins = np.zeros((len(names), len(names)))
    for target, row_models in zip(targets, models):
        known = [(index[m], float(t)) for m, t in zip(row_models or [], target) if m in index]
        if len(known) < 2:
            continue
        ids = np.array([i for i, _ in known])
        winners, losers = decided_pairs(np.array([t for _, t in known]), tie_eps)
        np.add.at(wins, (ids[winners], ids[losers]), 1.0)
    return wins


def decided_pairs(scores: np.ndarray, tie_eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays (winners, losers) of every pair of a row whose scores differ by more than ``tie_eps``."""
    return np.nonzero(scores[:, None] - scores[None, :] > tie_eps)


def bradley_terry(wins: np.ndarray, l2: float = 1e-3, max_iter: int = 200) -> np.ndarray:
    """Strengths s (mean 0) maximising the Bradley–Terry likelihood of ``wins`` (wins[a, b] = a beat b),
    with a small L2 penalty so that a model that never lost (or never won) gets a finite strength."""
    total = wins.sum()
    if total == 0:
        return np.zeros(len(wins))
    counts = torch.from_numpy(wins / total)
    strengths = torch.zeros(len(wins), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([strengths], max_iter=max_iter, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-10, tolerance_change=1e-12)

    def loss_fn():
        optimizer.zero_grad()
        margin = strengths[:, None] - strengths[None, :]
        loss = (counts * torch.nn.functional.softplus(-margin)).sum() + 0.5 * l2 * strengths.square().sum()
        loss.backward()
        return loss

    optimizer.step(loss_fn)
    fitted = strengths.detach().numpy()
    return fitted - fitted.mean()


def fitted_prior(targets: Sequence[np.ndarray], models: Sequence[Sequence[str | None]], names: Sequence[str],
                 tie_eps: float = 1e-6) -> torch.Tensor:
    """The prior offsets (one per name, in order) that a ranker trained on these rows should start from."""
    return torch.from_numpy(bradley_terry(win_counts(targets, models, names, tie_eps))).float()


def fitted_rule(targets: Sequence[np.ndarray], models: Sequence[Sequence[str | None]],
                lengths: Sequence[Sequence[float]], names: Sequence[str], tie_eps: float = 1e-6,
                l2: float = 1e-3, max_iter: int = 200) -> tuple[torch.Tensor, float]:
    """Strengths (one per name, in order, mean 0) and the length weight that maximise the pairwise
    likelihood of every row's decided pairs (see the module docstring). A candidate of an unnamed or
    unlisted model has strength 0. Returns (offsets, length_weight)."""
    index = {name: k + 1 for k, name in enumerate(names)}
    winners, losers, gaps = [], [], []
    for target, row_models, row_lengths in zip(targets, models, lengths, strict=True):
        scores = np.asarray(target, dtype=np.float64)
        ids = np.array([index.get(m, 0) if m else 0 for m in (row_models or [None] * len(scores))])
        x = np.asarray(row_lengths, dtype=np.float64)
        win, lose = decided_pairs(scores, tie_eps)
        winners.append(ids[win])
        losers.append(ids[lose])
        gaps.append(x[win] - x[lose])
    if not sum(len(g) for g in gaps):
        return torch.zeros(len(names)), 0.0
    winner, loser = torch.from_numpy(np.concatenate(winners)), torch.from_numpy(np.concatenate(losers))
    gap = torch.from_numpy(np.concatenate(gaps))
    strengths = torch.zeros(len(names), dtype=torch.float64, requires_grad=True)
    weight = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([strengths, weight], max_iter=max_iter, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-10, tolerance_change=1e-12)

    def loss_fn():
        optimizer.zero_grad()
        padded = torch.nn.functional.pad(strengths, (1, 0))
        margin = padded[winner] - padded[loser] + weight * gap
        loss = torch.nn.functional.softplus(-margin).mean() + 0.5 * l2 * strengths.square().sum()
        loss.backward()
        return loss

    optimizer.step(loss_fn)
    fitted = strengths.detach()
    return (fitted - fitted.mean()).float(), float(weight.detach())

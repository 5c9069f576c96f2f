"""A starting point for the model prior: Bradley–Terry strengths of the source models on the training data.

A ranker with a model prior scores a candidate as text score + offset[model]; its pair logit is the
difference of two such scores. Before the text part has learned anything, the best offsets are the
models' Bradley–Terry strengths: the s that maximise Σ_pairs log σ(s_winner − s_loser) over every
decided pair of candidates within a row. They are in the logit's own units, so a ranker whose prior
starts there begins as the "which model wrote it" rule and trains its text part on what that rule
leaves unexplained. Fitted from win counts (models × models), so it takes well under a second.
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
        scores = np.array([t for _, t in known])
        beats = scores[:, None] - scores[None, :] > tie_eps                      # beats[i, j]: i won over j
        winners = np.broadcast_to(ids[:, None], beats.shape)[beats]
        losers = np.broadcast_to(ids[None, :], beats.shape)[beats]
        np.add.at(wins, (winners, losers), 1.0)
    return wins


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

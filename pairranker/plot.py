"""A picture of a ranking run: which source models the ranker picks, and who beats whom."""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np

from .inference import RankResult


def plot_ranking(records: Sequence[dict], results: Sequence[RankResult], path: str,
                 score_key: str | None = "judge") -> str:
    """Write a PNG with (left) top-1 picks per source model, ranker vs. oracle when scores exist,
    and (right) the ranker's pairwise win rate of each model over each other model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({c["model"] for r in records for c in r["candidates"]})
    index = {m: k for k, m in enumerate(models)}
    picks = Counter(r["candidates"][res.best]["model"] for r, res in zip(records, results))
    oracle = Counter()
    for r in records:
        if score_key and all(score_key in (c.get("scores") or {}) for c in r["candidates"]):
            oracle[max(r["candidates"], key=lambda c: c["scores"][score_key])["model"]] += 1

    wins = np.zeros((len(models), len(models)))
    games = np.zeros((len(models), len(models)))
    for r, res in zip(records, results):
        if res.matrix is None:
            continue
        names = [index[c["model"]] for c in r["candidates"]]
        matrix = np.asarray(res.matrix)
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                if i != j:
                    games[a, b] += 1
                    wins[a, b] += matrix[i, j] > 0

    fig, axes = plt.subplots(1, 2, figsize=(6 + 0.5 * len(models), 0.45 * len(models) + 3))
    y = np.arange(len(models))
    axes[0].barh(y - 0.2, [picks[m] for m in models], height=0.4, label="ranker top-1")
    if oracle:
        axes[0].barh(y + 0.2, [oracle[m] for m in models], height=0.4, label=f"oracle (best {score_key})")
    axes[0].set_yticks(y, models, fontsize=8)
    axes[0].invert_yaxis()
    axes[0].set_xlabel("rows picked")
    axes[0].legend(fontsize=8)
    axes[0].set_title("Top-1 pick per source model")
    if games.any():
        rate = np.divide(wins, games, out=np.full_like(wins, np.nan), where=games > 0)
        image = axes[1].imshow(rate, vmin=0, vmax=1, cmap="RdBu")
        axes[1].set_xticks(y, models, rotation=90, fontsize=7)
        axes[1].set_yticks(y, models, fontsize=7)
        axes[1].set_title("P(row model beats column model)")
        fig.colorbar(image, ax=axes[1], fraction=0.046)
    else:
        axes[1].axis("off")
        axes[1].text(0.5, 0.5, "no comparison matrix\n(knockout aggregation)", ha="center", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

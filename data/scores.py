"""Turn each candidate's metric scores into one number per candidate, the ranking target.

LLM-Blender ranks MixInstruct candidates by several metrics at once; here the user names the score
keys (one or several), optional weights, and a per-row normalisation so that metrics on different
scales (BLEU in [0, 100], BARTScore negative, a judge probability in [0, 1]) can be summed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
from scipy.stats import rankdata

from ..core.errors import ConfigError

Normalize = Literal["none", "zscore", "rank"]


@dataclass(frozen=True)
class ScoreSpec:
    """Which scores define "better", and how to combine them. Higher is always better.

    Args:
        keys: score names in ``candidates[i].scores`` (e.g. ``("judge",)`` or ``("bleu", "rougeL")``).
        weights: one weight per key (default: all 1). Use a negative weight for a lower-is-better metric.
        normalize: per row and per key before weighting: ``"none"``; ``"zscore"`` (mean 0, std 1
            within the row); ``"rank"`` (average rank in [0, 1], ties share a rank).
    """

    keys: tuple[str, ...] = ("judge",)
    weights: tuple[float, ...] | None = None
    normalize: Normalize = "none"

    def __post_init__(self):
        object.__setattr__(self, "keys", tuple(self.keys))
        if not self.keys:
            raise ConfigError("score keys: name at least one score key (e.g. ['judge']).")
        if self.weights is not None:
            object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
            if len(self.weights) != len(self.keys):
                raise ConfigError(f"score weights: need one weight per key ({len(self.keys)} keys "
                                  f"{list(self.keys)}), got {len(self.weights)}.")
        if self.normalize not in ("none", "zscore", "rank"):
            raise ConfigError(f"score normalize: expected 'none', 'zscore' or 'rank', got {self.normalize!r}.")

    def combine(self, candidates: Sequence[dict]) -> np.ndarray:
        """One combined score per candidate of a row (float64 array)."""
        weights = self.weights or (1.0,) * len(self.keys)
        total = np.zeros(len(candidates))
        for key, weight in zip(self.keys, weights):
            values = np.array([_score(c, key) for c in candidates], dtype=np.float64)
            total += weight * _normalize(values, self.normalize)
        return total


def _score(candidate: dict, key: str) -> float:
    value = (candidate.get("scores") or {}).get(key)
    if value is None:
        raise KeyError(f"candidate from model {candidate.get('model')!r} has no score '{key}'; "
                       "load the data with required_scores including it.")
    return float(value)


def _normalize(values: np.ndarray, how: str) -> np.ndarray:
    if how == "zscore":
        std = values.std()
        return (values - values.mean()) / std if std > 0 else np.zeros_like(values)
    if how == "rank":
        if len(values) == 1:
            return np.zeros_like(values)
        return (rankdata(values, method="average") - 1) / (len(values) - 1)
    return values

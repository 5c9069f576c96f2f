"""Bootstrap intervals over rows: how much a benchmark figure would move on other rows like these.

A mean over ~100 rows is noisy; resampling the rows with replacement shows how noisy. Comparing two
selections *on the same rows* is far more precise than comparing two separate intervals, because
what makes a row hard is shared: :func:`paired_bootstrap` resamples the per-row differences.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A mean with its percentile-bootstrap interval (``level`` = 0.95: the 2.5 and 97.5 percentiles)."""

    mean: float
    low: float
    high: float
    level: float
    rows: int


@dataclass(frozen=True)
class PairedComparison:
    """A − B on the same rows: the mean difference, its bootstrap interval, and the share of resamples
    in which A is better (ties count half)."""

    difference: Interval
    p_a_better: float


def _resampled_means(values: np.ndarray, resamples: int, seed: int, chunk: int = 1000) -> np.ndarray:
    """Means of ``resamples`` draws of len(values) rows with replacement (drawn in chunks to bound memory)."""
    rng = np.random.default_rng(seed)
    means = [values[rng.integers(0, len(values), size=(min(chunk, resamples - start), len(values)))].mean(axis=1)
             for start in range(0, resamples, chunk)]
    return np.concatenate(means)


def _interval(values: np.ndarray, means: np.ndarray, level: float) -> Interval:
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(float(values.mean()), float(low), float(high), level, len(values))


def _as_rows(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or len(array) == 0 or not np.isfinite(array).all():
        raise ValueError(f"{name} must be a non-empty 1-D sequence of finite per-row values, got shape {array.shape}")
    return array


def bootstrap_interval(values: Sequence[float] | np.ndarray, resamples: int = 10_000, level: float = 0.95,
                       seed: int = 0) -> Interval:
    """Mean of per-row ``values`` with a percentile bootstrap interval (rows resampled with replacement).

    >>> bootstrap_interval([4.0, 4.0, 4.0]).high
    4.0
    """
    values = _as_rows(values, "values")
    return _interval(values, _resampled_means(values, resamples, seed), level)


def paired_bootstrap(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, lower_is_better: bool = True,
                     resamples: int = 10_000, level: float = 0.95, seed: int = 0) -> PairedComparison:
    """Compare per-row values of A and B measured on the same rows (row i of ``a`` and of ``b`` is the
    same row): the mean of A − B with its bootstrap interval, and P(A better) over the resamples.

    >>> result = paired_bootstrap([2.0, 3.0, 1.0], [2.0, 3.0, 1.0])
    >>> (result.difference.low, result.difference.high, result.p_a_better)
    (0.0, 0.0, 0.5)
    """
    a, b = _as_rows(a, "a"), _as_rows(b, "b")
    if len(a) != len(b):
        raise ValueError(f"paired_bootstrap needs the same rows for A and B, got {len(a)} and {len(b)} values")
    differences = a - b
    means = _resampled_means(differences, resamples, seed)
    a_better = (means < 0) if lower_is_better else (means > 0)
    p_a_better = float(a_better.mean() + 0.5 * (means == 0).mean())
    return PairedComparison(_interval(differences, means, level), p_a_better)

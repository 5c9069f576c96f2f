import numpy as np
import pytest

from blendkit.core.bootstrap import bootstrap_interval, paired_bootstrap


def test_identical_selections_differ_by_exactly_zero():
    values = np.random.default_rng(1).uniform(1, 12, size=105)
    result = paired_bootstrap(values, values.copy())
    assert (result.difference.mean, result.difference.low, result.difference.high) == (0.0, 0.0, 0.0)
    assert result.p_a_better == 0.5   # every resample a tie: no evidence either way


def test_clearly_separated_selections_have_an_interval_excluding_zero():
    rng = np.random.default_rng(2)
    b = rng.uniform(3, 9, size=100)
    a = b - 1.5 + rng.normal(0, 0.5, size=100)   # A ranks 1.5 places better on every row, give or take
    result = paired_bootstrap(a, b)
    assert result.difference.high < 0 and result.difference.low > -2.0
    assert result.difference.mean == pytest.approx(float(np.mean(a - b)))
    assert result.p_a_better == 1.0
    assert paired_bootstrap(a, b, lower_is_better=False).p_a_better == 0.0   # for a higher-is-better figure


def test_pairing_sees_a_shared_row_effect_that_separate_intervals_hide():
    rng = np.random.default_rng(3)
    hardness = rng.uniform(1, 12, size=105)   # most of the spread is the rows, shared by both selections
    a, b = hardness - 0.3, hardness
    alone_a, alone_b = bootstrap_interval(a), bootstrap_interval(b)
    assert alone_a.high > alone_b.low                 # the two intervals overlap ...
    assert paired_bootstrap(a, b).difference.high < 0  # ... yet A is better on the same rows


def test_interval_covers_the_mean_and_narrows_with_more_rows():
    rng = np.random.default_rng(4)
    small, large = bootstrap_interval(rng.normal(5, 2, 50)), bootstrap_interval(rng.normal(5, 2, 2000))
    assert small.low < small.mean < small.high and large.low < large.mean < large.high
    assert (large.high - large.low) < (small.high - small.low) / 3
    assert small.rows == 50 and small.level == 0.95


def test_same_seed_same_interval():
    values = np.random.default_rng(5).normal(0, 1, 80)
    assert bootstrap_interval(values, seed=7) == bootstrap_interval(values, seed=7)


def test_bad_inputs_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="same rows"):
        paired_bootstrap([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_interval([])
    with pytest.raises(ValueError, match="finite"):
        bootstrap_interval([1.0, float("nan")])

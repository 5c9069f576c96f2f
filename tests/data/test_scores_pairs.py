import numpy as np
import pytest

from blendkit.data import ConfigError, ScoreSpec, build_pairs


def _cands(*scores):
    return [{"model": f"m{k}", "scores": s} for k, s in enumerate(scores)]


def test_single_key_is_the_raw_score():
    spec = ScoreSpec(("judge",))
    assert spec.combine(_cands({"judge": 0.2}, {"judge": 0.7})).tolist() == [0.2, 0.7]


def test_weighted_sum_of_normalized_keys():
    cands = _cands({"bleu": 10, "bart": -3}, {"bleu": 30, "bart": -1}, {"bleu": 20, "bart": -2})
    rank = ScoreSpec(("bleu", "bart"), normalize="rank").combine(cands)
    assert rank.tolist() == [0.0, 2.0, 1.0]
    z = ScoreSpec(("bleu", "bart"), weights=(1.0, -1.0), normalize="zscore").combine(cands)
    np.testing.assert_allclose(z, [0.0, 0.0, 0.0], atol=1e-12)  # equal z-scores cancel with opposite weights
    tied = ScoreSpec(("bleu",), normalize="rank").combine(_cands({"bleu": 1}, {"bleu": 1}, {"bleu": 2}))
    assert tied.tolist() == [0.25, 0.25, 1.0]


def test_score_spec_errors_name_the_field():
    with pytest.raises(ConfigError, match="score weights: need one weight per key"):
        ScoreSpec(("a", "b"), weights=(1.0,))
    with pytest.raises(ConfigError, match="score normalize"):
        ScoreSpec(("a",), normalize="minmax")
    with pytest.raises(KeyError, match="has no score 'rouge'"):
        ScoreSpec(("rouge",)).combine(_cands({"judge": 1}))


def _check_labels(scores, pairs):
    for i, j, label in pairs:
        if label == 0.5:
            assert scores[i] == scores[j]
        else:
            assert label == float(scores[i] > scores[j])


def test_all_pairs_skip_ties_and_random_order():
    scores = np.array([0.1, 0.5, 0.5, 0.9])
    pairs = build_pairs(scores, "all", ties="skip", rng=np.random.default_rng(0))
    assert len(pairs) == 5  # 6 unordered pairs minus the tie
    assert {frozenset((i, j)) for i, j, _ in pairs} == {frozenset(p) for p in [(0, 1), (0, 2), (0, 3), (1, 3), (2, 3)]}
    _check_labels(scores, pairs)
    many = build_pairs(np.arange(20.0), "all", rng=np.random.default_rng(1))
    firsts_better = sum(label for *_, label in many)
    assert 0.3 * len(many) < firsts_better < 0.7 * len(many)  # the better one is first about half the time


def test_ties_half_keeps_tied_pairs_with_half_labels():
    scores = np.array([0.5, 0.5, 0.9])
    pairs = build_pairs(scores, "all", ties="half", rng=np.random.default_rng(0))
    assert len(pairs) == 3 and sorted(p[2] for p in pairs).count(0.5) == 1
    _check_labels(scores, pairs)


def test_random_k_and_top_bottom():
    scores = np.arange(10.0)
    rng = np.random.default_rng(0)
    pairs = build_pairs(scores, "random", k=7, rng=rng)
    assert len(pairs) == 7 and len({frozenset((i, j)) for i, j, _ in pairs}) == 7
    _check_labels(scores, pairs)
    tb = build_pairs(scores, "top_bottom", k=3, rng=rng)
    assert {frozenset((i, j)) for i, j, _ in tb} == {frozenset((9, 0)), frozenset((8, 1)), frozenset((7, 2))}
    _check_labels(scores, tb)
    assert len(build_pairs(np.arange(3.0), "random", k=50, rng=rng)) == 3


def test_pairs_are_reproducible_from_the_seed():
    scores = np.random.default_rng(3).random(12)
    a = build_pairs(scores, "random", k=5, rng=np.random.default_rng([7, 2]))
    b = build_pairs(scores, "random", k=5, rng=np.random.default_rng([7, 2]))
    assert a == b


def test_pair_option_errors():
    with pytest.raises(ConfigError, match="pair_strategy"):
        build_pairs(np.zeros(3), "pairs")
    with pytest.raises(ConfigError, match="ties"):
        build_pairs(np.zeros(3), "all", ties="drop")
    with pytest.raises(ConfigError, match="pairs_per_row"):
        build_pairs(np.zeros(3), "random", k=0)


def test_top_bottom_with_ties_and_random_reaching_k_despite_ties():
    scores = np.array([1.0, 1.0, 1.0, 1.0, 2.0, 0.0])
    skip = build_pairs(scores, "top_bottom", k=3, ties="skip", rng=np.random.default_rng(0))
    assert [frozenset((i, j)) for i, j, _ in skip] == [frozenset((4, 5))]  # the 2 other contrasts are ties
    half = build_pairs(scores, "top_bottom", k=3, ties="half", rng=np.random.default_rng(0))
    assert sorted(label for *_, label in half).count(0.5) == 2
    many_ties = np.array([0.5] * 8 + [0.1, 0.9])
    pairs = build_pairs(many_ties, "random", k=10, ties="skip", rng=np.random.default_rng(0))
    assert len(pairs) == 10 and all(label in (0.0, 1.0) for *_, label in pairs)
    _check_labels(many_ties, pairs)


def test_rank_distance_draws_k_distinct_pairs_favouring_far_apart_ones():
    scores = np.random.default_rng(5).random(20)
    ranks = np.argsort(np.argsort(-scores))
    drawn = []
    for seed in range(200):
        pairs = build_pairs(scores, "rank_distance", k=8, rng=np.random.default_rng(seed))
        assert len(pairs) == 8 and len({frozenset((i, j)) for i, j, _ in pairs}) == 8
        _check_labels(scores, pairs)
        drawn += [abs(ranks[i] - ranks[j]) for i, j, _ in pairs]
    # Uniform pairs of 20 are on average 7 ranks apart; weighted by distance, sum(d²) / sum(d) = 10.
    assert np.mean(drawn) > 9.0
    assert min(drawn) == 1                                                  # neighbours still get drawn
    again = build_pairs(scores, "rank_distance", k=8, rng=np.random.default_rng(3))
    assert again == build_pairs(scores, "rank_distance", k=8, rng=np.random.default_rng(3))


def test_rank_distance_never_draws_tied_pairs():
    scores = np.array([0.5] * 6 + [0.1, 0.9])
    for ties in ("skip", "half"):
        pairs = build_pairs(scores, "rank_distance", k=6, ties=ties, rng=np.random.default_rng(0))
        assert len(pairs) == 6 and all(label in (0.0, 1.0) for *_, label in pairs)
        _check_labels(scores, pairs)

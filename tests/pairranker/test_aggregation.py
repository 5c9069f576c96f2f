import pytest
import torch

from blendkit.pairranker.aggregation import (
    best_first,
    estimate_row_sums,
    final_round_pairs,
    knockout,
    knockout_chain,
    knockout_comparisons,
    max_logits,
    max_wins,
    ranks_from_scores,
)


def _matrix_from_strengths(strengths):
    s = torch.tensor(strengths)
    return s[:, None] - s[None, :]


class _Recorder:
    """A compare callback over fixed matrices that keeps every call's triples."""

    def __init__(self, matrices):
        self.matrices, self.calls = matrices, []

    def __call__(self, triples):
        self.calls.append(list(triples))
        return torch.tensor([float(self.matrices[r][i, j]) for r, i, j in triples])

    def pairs(self, row):
        return [frozenset((i, j)) for call in self.calls for r, i, j in call if r == row]


def test_max_logits_and_max_wins_recover_a_transitive_order():
    matrix = _matrix_from_strengths([0.3, 2.0, -1.0, 1.1])
    assert ranks_from_scores(max_logits(matrix)) == [3, 1, 4, 2]
    assert ranks_from_scores(max_wins(matrix)) == [3, 1, 4, 2]


def test_max_wins_counts_wins_not_margins():
    # 0 beats 1 and 2 narrowly; 1 crushes 2 and loses narrowly to 0: max_wins prefers 0, max_logits 1.
    matrix = torch.tensor([[0.0, 0.1, 0.1], [-0.1, 0.0, 9.0], [-0.1, -9.0, 0.0]])
    assert ranks_from_scores(max_wins(matrix))[0] == 1
    assert ranks_from_scores(max_logits(matrix))[1] == 1
    wins = max_wins(matrix)
    assert wins[0] > 2 and wins[0] < 3 and 1 < wins[1] < 2  # integer part is the number of wins


def test_knockout_reproduces_max_logits_on_additive_matrices_of_mixed_sizes():
    generator = torch.Generator().manual_seed(0)
    sizes = [12, 1, 2, 3, 5, 12, 7, 11]
    matrices = [_matrix_from_strengths(torch.randn(n, generator=generator).tolist()) for n in sizes]
    scores = knockout(sizes, _Recorder(matrices))
    for n, matrix, s in zip(sizes, matrices, scores):
        assert s.shape == (n,)
        # additive logits are fitted exactly, so the filled-in row sums are the full matrix's
        assert s == pytest.approx(max_logits(matrix), abs=1e-4)
        assert ranks_from_scores(s) == ranks_from_scores(max_logits(matrix))


def test_knockout_stays_within_2n_plus_6_passes_and_batches_rows_per_round():
    sizes = [12, 1, 2, 3, 4, 5, 12, 30]
    generator = torch.Generator().manual_seed(1)
    matrices = []
    for n in sizes:
        noise = torch.randn(n, n, generator=generator)
        matrices.append(_matrix_from_strengths(torch.randn(n, generator=generator).tolist()) + noise - noise.T)
    compare = _Recorder(matrices)
    knockout(sizes, compare)
    assert len(compare.calls) == max(sizes) - 1 + 1      # N-1 knockout rounds, then one final round
    for r, n in enumerate(sizes):
        pairs = compare.pairs(r)
        assert len(pairs) == len(set(pairs)) == knockout_comparisons(n)   # no pair is compared twice
        assert 2 * len(pairs) <= 2 * n + 6
        assert all(len(p) == 2 and max(p) < n for p in pairs)
    assert [knockout_comparisons(n) for n in (1, 2, 3, 4, 5, 12)] == [0, 1, 3, 6, 8, 15]
    # rows of up to 4 candidates are small enough to be compared in full
    assert all(len(compare.pairs(r)) == n * (n - 1) // 2 for r, n in enumerate(sizes) if n <= 4)


def test_knockout_single_and_two_candidate_rows():
    compare = _Recorder([torch.zeros(1, 1), torch.tensor([[0.0, -0.7], [0.7, 0.0]])])
    one, two = knockout([1, 2], compare)
    assert one.tolist() == [0.0]
    assert two.tolist() == pytest.approx([-0.7, 0.7])
    assert compare.calls == [[(1, 1, 0)]]                 # one comparison, asked as "1 beats 0"
    assert knockout([], compare) == []


def test_knockout_ties_keep_input_order():
    compare = _Recorder([torch.zeros(6, 6), _matrix_from_strengths([0.0, 1.0, 1.0, -2.0])])
    flat, tied = knockout([6, 4], compare)
    assert flat.tolist() == [0.0] * 6 and ranks_from_scores(flat)[0] == 1
    assert tied[1] == pytest.approx(tied[2]) and ranks_from_scores(tied)[1] == 1


def test_knockout_follows_the_row_sums_where_the_last_champion_would_not():
    # Candidate 1 has the largest row sum but loses its one meeting with 3 narrowly: the former knockout
    # (champion meets each next candidate) crowned 3; the filled-in row sums keep 1 first.
    matrix = _matrix_from_strengths([0.0, 2.0, -1.0, 1.5, -0.5, 0.5, -1.5, 0.2])
    matrix[1, 3], matrix[3, 1] = -0.1, 0.1
    assert int(max_logits(matrix).argmax()) == 1
    [scores] = knockout([8], _Recorder([matrix]))
    assert ranks_from_scores(scores)[1] == 1


def test_knockout_rejects_a_negative_final_round():
    with pytest.raises(ValueError, match="final must be >= 0"):
        knockout([3], _Recorder([torch.zeros(3, 3)]), final=-1)


def test_estimate_row_sums_fills_in_missing_entries_from_additive_strengths():
    matrix = _matrix_from_strengths([1.0, 0.0, -2.0, 3.0])
    full = {(i, j): float(matrix[i, j]) for i in range(4) for j in range(i + 1, 4)}
    assert estimate_row_sums(4, full) == pytest.approx(max_logits(matrix))
    # a path 0-1-2-3 (one orientation reversed) determines every other entry
    path = {(0, 1): 1.0, (2, 1): -2.0, (2, 3): -5.0}
    assert estimate_row_sums(4, path) == pytest.approx(max_logits(matrix))
    # two unconnected parts: each is centred on zero (strengths 1, -1 and -2, 2), i.e. taken as equally strong
    # on average; row 0 = 2 (seen) + (1 + 2) + (1 - 2)
    assert estimate_row_sums(4, {(0, 1): 2.0, (2, 3): -4.0}).tolist() == pytest.approx([4.0, -4.0, -8.0, 8.0])


def test_final_round_pairs_start_with_the_leaders_meeting_and_skip_seen_pairs():
    scores = torch.tensor([0.0, 5.0, 1.0, 4.0, 3.0])
    assert final_round_pairs(scores, {}, 4) == [(3, 1), (1, 4), (3, 4), (1, 2)]
    assert final_round_pairs(scores, {(1, 3): 0.5, (4, 1): 0.2}, 2) == [(3, 4), (1, 2)]
    assert final_round_pairs(torch.tensor([1.0, 0.0]), {(0, 1): 1.0}, 3) == []


def test_ranks_are_a_permutation_with_stable_ties():
    assert ranks_from_scores(torch.tensor([1.0, 1.0, 3.0])) == [2, 3, 1]


def test_the_knockout_chain_connects_every_candidate_with_n_minus_1_matches():
    strengths = torch.tensor([0.0, 2.0, 1.0, 3.0, -1.0])
    matrix = strengths[:, None] - strengths[None, :]
    calls = []

    def compare(triples):
        calls.append(triples)
        return torch.tensor([float(matrix[i, j]) for _, i, j in triples])

    (observed,) = knockout_chain([5], compare)
    # the champion is 0, then 1 (beats 0), stays 1 against 2, then 3 (beats 1), stays 3 against 4
    assert list(observed) == [(1, 0), (2, 1), (3, 1), (4, 3)]
    assert observed[(3, 1)] == pytest.approx(1.0) and len(calls) == 4
    assert best_first(estimate_row_sums(5, observed)) == best_first(strengths) == [3, 1, 2, 0, 4]
    assert best_first(torch.tensor([1.0, 2.0, 2.0])) == [1, 2, 0]

import torch

from blendkit.pairranker.aggregation import knockout, max_logits, max_wins, ranks_from_scores


def _matrix_from_strengths(strengths):
    s = torch.tensor(strengths)
    return s[:, None] - s[None, :]


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


def test_knockout_finds_the_winner_with_n_minus_1_comparisons_per_row():
    strengths = [[0.3, 2.0, -1.0, 1.1, 0.0], [5.0, 1.0], [1.0]]
    calls = []

    def compare(triples):
        calls.append(list(triples))
        return torch.tensor([strengths[r][a] - strengths[r][b] for r, a, b in triples])

    scores = knockout([len(s) for s in strengths], compare)
    assert [ranks_from_scores(s).index(1) for s in scores] == [1, 0, 0]
    assert sum(len(c) for c in calls) == 4 + 1 + 0          # N-1 per row
    assert len(calls) == 4                                   # one batched call per round
    assert [len(c) for c in calls] == [2, 1, 1, 1]           # rows drop out when they run out of candidates
    assert ranks_from_scores(scores[0]) == [5, 1, 4, 3, 2]  # knocked out later = ranked higher


def test_ranks_are_a_permutation_with_stable_ties():
    assert ranks_from_scores(torch.tensor([1.0, 1.0, 3.0])) == [2, 3, 1]

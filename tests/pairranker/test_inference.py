import pytest
import torch

from blendkit.pairranker import Ranker
from blendkit.pairranker.aggregation import knockout_comparisons

QUESTION = "Which number is prime?"
ANSWERS = ["7 is prime.", "8 is prime because it is even.", "9.", "The number 11 is prime, since its only "
           "divisors are 1 and itself.", ""]


@pytest.fixture
def ranker(tiny_ranker):
    model, tokenizer = tiny_ranker
    return Ranker(model, tokenizer, batch_size=4)


def test_compare_is_order_symmetric(ranker):
    p = ranker.compare(QUESTION, ANSWERS[0], ANSWERS[3])
    q = ranker.compare(QUESTION, ANSWERS[3], ANSWERS[0])
    assert 0 < p < 1 and p + q == pytest.approx(1.0, abs=1e-6)


def test_full_matrix_is_antisymmetric_and_matches_compare(ranker):
    [result] = ranker.rank(QUESTION, ANSWERS, return_matrix=True)
    m = torch.tensor(result.matrix)
    torch.testing.assert_close(m, -m.T)
    assert result.comparisons == 5 * 4
    p = ranker.compare(QUESTION, ANSWERS[1], ANSWERS[2])
    assert torch.sigmoid(m[1, 2]).item() == pytest.approx(p, abs=1e-5)
    assert sorted(result.ranks) == [1, 2, 3, 4, 5]
    torch.testing.assert_close(torch.tensor(result.scores), m.sum(1))
    assert result.order[0] == result.best == result.ranks.index(1)


def test_batching_and_length_sorting_do_not_change_results(tiny_ranker):
    model, tokenizer = tiny_ranker
    rows = [ANSWERS, ANSWERS[:3][::-1], ["a", "b"]]
    questions = [QUESTION, "Say hi.", "Pick a letter."]
    big = Ranker(model, tokenizer, batch_size=64).rank(questions, rows, ids=["x", "y", "z"])
    small = Ranker(model, tokenizer, batch_size=2).rank(questions, rows, ids=["x", "y", "z"])
    assert [r.id for r in big] == ["x", "y", "z"]
    for a, b in zip(big, small):
        assert a.ranks == b.ranks
        assert a.scores == pytest.approx(b.scores, abs=1e-5)


def test_knockout_and_best_of_n(ranker):
    [full] = ranker.rank(QUESTION, ANSWERS, aggregation="max_wins", return_matrix=True)
    [ko] = ranker.rank(QUESTION, ANSWERS, aggregation="knockout")
    # 4 chained matches and a final round of 4 among the leaders: 8 of the 10 pairs, both orders each
    assert ko.comparisons == 2 * knockout_comparisons(len(ANSWERS)) == 16 and ko.matrix is None
    m = torch.tensor(full.matrix)
    assert (m[ko.best] > 0).any()            # the pick beats someone head to head
    assert ko.best == int(m.sum(1).argmax())  # with 8 of 10 pairs seen, knockout finds the max_logits pick
    assert ranker.best_of_n(QUESTION, ANSWERS) == ANSWERS[ko.best]
    assert ranker.best_of_n([QUESTION, QUESTION], [ANSWERS, ANSWERS[:2]])[0] == ANSWERS[ko.best]


def test_rank_rejects_bad_arguments(ranker):
    with pytest.raises(ValueError, match="aggregation must be one of"):
        ranker.rank(QUESTION, ANSWERS, aggregation="borda")
    with pytest.raises(ValueError, match="2 instructions but 1 candidate lists"):
        ranker.rank([QUESTION, QUESTION], [ANSWERS])
    with pytest.raises(ValueError, match="has no candidates"):
        ranker.rank([QUESTION], [[]])


def test_single_candidate_rows_rank_first(ranker):
    [result] = ranker.rank([QUESTION], [["only one"]])
    assert result.ranks == [1] and result.comparisons == 0

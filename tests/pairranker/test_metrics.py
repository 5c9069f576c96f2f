import pytest
import torch

from blendkit.pairranker.metrics import RankingMetrics, judge_rank


def test_known_values_over_two_rows():
    metric = RankingMetrics(("judge",))
    # Row 1: the ranker agrees with the targets exactly -> picks the best (0.9).
    metric.update(torch.tensor([3.0, 2.0, 1.0]), torch.tensor([0.9, 0.5, 0.1]), torch.tensor([[0.9], [0.5], [0.1]]))
    # Row 2: the ranker is exactly reversed -> picks the worst (0.1); best would be 0.9.
    metric.update(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.9, 0.5, 0.1]), torch.tensor([[0.9], [0.5], [0.1]]))
    values = metric.compute()
    assert values["top1"] == pytest.approx(50.0)          # (0.9 + 0.1) / 2 x 100
    assert values["oracle"] == pytest.approx(90.0)
    assert values["pair_acc"] == pytest.approx(50.0)      # 3 of 6 pairs right
    assert values["spearman"] == pytest.approx(0.0, abs=1e-6)   # +1 and -1
    assert values["kendall"] == pytest.approx(0.0, abs=1e-6)
    assert values["rows"] == 2


def test_pair_matrix_is_used_and_ties_are_not_counted():
    metric = RankingMetrics(("judge", "bleu"))
    scores = torch.tensor([0.0, 1.0, 2.0])
    matrix = torch.tensor([[0.0, 1.0, 1.0], [-1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]])  # 0 > 2 > 1 pairwise
    target = torch.tensor([0.9, 0.1, 0.1])  # candidates 1 and 2 tie
    metric.update(scores, target, torch.tensor([[0.9, 10.0], [0.1, 50.0], [0.1, 20.0]]), matrix)
    values = metric.compute()
    assert values["pair_acc"] == pytest.approx(100.0)     # pairs (0,1) and (0,2) right; (1,2) tied, not counted
    assert values["top1"] == pytest.approx(10.0)          # argmax of scores = candidate 2, judge 0.1
    assert values["top1_bleu"] == pytest.approx(2000.0)   # raw bleu 20 x 100
    assert values["oracle_bleu"] == pytest.approx(5000.0)


def test_knockout_mode_reports_only_top1():
    metric = RankingMetrics(("judge",), full_order=False)
    metric.update(torch.tensor([1.0, 0.0]), torch.tensor([0.2, 0.8]), torch.tensor([[0.2], [0.8]]))
    assert set(metric.compute()) == {"top1", "oracle", "judge_rank", "rows"}


def test_judge_rank_gives_tied_candidates_the_mean_of_their_ranks():
    judge = [0.5, 0.2, 0.2, 0.1]
    assert judge_rank(judge, 0) == 1.0
    assert judge_rank(judge, 1) == 2.5          # tied with candidate 2 for ranks 2 and 3
    assert judge_rank(judge, 2) == 2.5
    assert judge_rank(judge, 3) == 4.0
    assert judge_rank([0.3, 0.3, 0.3], 1) == 2.0  # all tied: the mean rank, (N + 1) / 2
    assert list(judge_rank([[0.5, 1.0], [0.2, 3.0], [0.2, 2.0]], 2)) == [2.5, 2.0]   # one rank per score column


def test_judge_rank_is_the_judges_rank_of_the_ranker_pick_averaged_over_rows():
    metric = RankingMetrics(("judge", "bleu"))
    judge = torch.tensor([0.5, 0.2, 0.2, 0.1], dtype=torch.float64)
    raw = torch.stack([judge, torch.tensor([10.0, 40.0, 30.0, 20.0], dtype=torch.float64)], dim=1)
    # Row 1: the ranker puts candidate 2 first: judge rank 2.5 (tied with candidate 1), bleu rank 2.
    metric.update(torch.tensor([0.0, 1.0, 3.0, 2.0]), judge, raw)
    values = metric.compute()
    assert values["judge_rank"] == pytest.approx(2.5)
    assert values["judge_rank_bleu"] == pytest.approx(2.0)
    # Row 2: the ranker puts candidate 0 first: judge rank 1, bleu rank 4. Means over the two rows:
    metric.update(torch.tensor([5.0, 1.0, 3.0, 2.0]), judge, raw)
    values = metric.compute()
    assert values["judge_rank"] == pytest.approx((2.5 + 1.0) / 2)
    assert values["judge_rank_bleu"] == pytest.approx((2.0 + 4.0) / 2)
    assert values["top1"] == pytest.approx(100 * (0.2 + 0.5) / 2)


def test_judge_rank_keeps_scores_that_differ_in_the_tenth_decimal_apart():
    metric = RankingMetrics(("judge",))
    judge = torch.tensor([0.9999999999, 0.9999999998, 0.1], dtype=torch.float64)
    metric.update(torch.tensor([0.0, 1.0, 0.5]), judge, judge[:, None])
    assert metric.compute()["judge_rank"] == pytest.approx(2.0)   # not 1.5: float32 would tie them


def test_judge_rank_sums_merge_like_distributed_processes():
    judge = torch.tensor([0.5, 0.2, 0.2, 0.1], dtype=torch.float64)
    first, second = RankingMetrics(("judge",)), RankingMetrics(("judge",))
    first.update(torch.tensor([0.0, 1.0, 3.0, 2.0]), judge, judge[:, None])    # rank 2.5
    second.update(torch.tensor([0.0, 1.0, 2.0, 3.0]), judge, judge[:, None])   # rank 4
    first.merge_state(second)
    assert first.compute()["judge_rank"] == pytest.approx((2.5 + 4.0) / 2)

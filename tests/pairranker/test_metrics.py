import pytest
import torch

from blendkit.pairranker.metrics import RankingMetrics


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
    assert set(metric.compute()) == {"top1", "oracle", "rows"}

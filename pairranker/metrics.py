"""Ranking quality as a torchmetrics Metric (distributed-safe: every state is a summed tensor).

Per row it takes the ranker's aggregated scores, the target scores and the raw score values; the
candidate the ranker puts first is the *pick*. It reports, averaged over rows:

- ``top1``: the pick's raw score ×100 (for the judge: mean P(pick beats the reference), in points);
  ``oracle``: the same for the best candidate of each row (the most ``top1`` can reach);
- ``judge_rank``: the pick's rank under the raw score, 1 = best of the row, tied candidates share the
  mean of their ranks (LLM-Blender's GPT-Rank); lower is better, 1 is the oracle, (N+1)/2 a random pick;
- ``pair_acc``: % of the row's non-tied candidate pairs ordered like the targets;
- ``spearman`` / ``kendall``: per-row rank correlation between ranker scores and targets.

``top1``, ``oracle`` and ``judge_rank`` exist for every score key: unsuffixed for the first (the judge),
``top1_<key>`` … for the others.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.functional import kendall_rank_corrcoef, spearman_corrcoef


def judge_rank(scores: Sequence[float] | np.ndarray, pick: int) -> float | np.ndarray:
    """Rank of candidate ``pick`` under ``scores`` (higher is better): 1 = best, and candidates with equal
    scores share the mean of the ranks they span. ``scores`` of shape (N, K) give one rank per column.

    >>> float(judge_rank([0.5, 0.2, 0.2, 0.1], 2))   # one better, tied with one: ranks 2 and 3 -> 2.5
    2.5
    """
    scores = np.asarray(scores, dtype=np.float64)
    better = (scores > scores[pick]).sum(axis=0)
    tied = (scores == scores[pick]).sum(axis=0)   # the pick included
    return better + (tied + 1) / 2


class RankingMetrics(Metric):
    full_state_update = False
    higher_is_better = None   # mixed: judge_rank is better when lower, the others when higher

    def __init__(self, score_keys: Sequence[str] = ("judge",), tie_eps: float = 1e-6, full_order: bool = True,
                 **kwargs):
        """``tie_eps``: targets closer than this are a tie for ``pair_acc`` (``judge_rank`` ties only equal
        scores). ``full_order=False`` (knockout rankings): only the pick's figures are reported, since the
        rest of a knockout order is partial and would make pair accuracy and correlations misleading."""
        super().__init__(**kwargs)
        self.score_keys = tuple(score_keys)
        self.full_order = full_order
        self.tie_eps = tie_eps
        k = len(self.score_keys)
        self.add_state("top1_sum", default=torch.zeros(k, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("oracle_sum", default=torch.zeros(k, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("judge_rank_sum", default=torch.zeros(k, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("rows", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("pairs_correct", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("pairs_total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("spearman_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("kendall_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("corr_rows", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, ranker_scores: torch.Tensor, target: torch.Tensor, raw: torch.Tensor,
               pair_matrix: torch.Tensor | None = None) -> None:
        """One row. ``ranker_scores``/``target``: (N,); ``raw``: (N, len(score_keys)), pass float64 so that
        close scores stay distinct; ``pair_matrix``: optional (N, N) logits M[i, j] > 0 meaning i beats j
        (else scores are compared)."""
        ranker_scores = ranker_scores.detach().double().cpu()
        target = target.detach().double().cpu()
        raw = raw.detach().double().cpu().reshape(len(target), -1)
        pick = int(torch.argmax(ranker_scores))
        self.top1_sum += raw[pick].to(self.top1_sum.device)
        self.oracle_sum += raw.max(dim=0).values.to(self.oracle_sum.device)
        self.judge_rank_sum += torch.from_numpy(judge_rank(raw.numpy(), pick)).to(self.judge_rank_sum.device)
        self.rows += 1

        diff_target = target[:, None] - target[None, :]
        if pair_matrix is None:
            diff_pred = ranker_scores[:, None] - ranker_scores[None, :]
        else:
            diff_pred = pair_matrix.detach().double().cpu()
        upper = torch.triu(torch.ones_like(diff_target, dtype=torch.bool), diagonal=1)
        counted = upper & (diff_target.abs() > self.tie_eps)
        self.pairs_correct += ((diff_pred > 0) == (diff_target > 0))[counted].sum().double().item()
        self.pairs_total += counted.sum().double().item()

        if len(target) >= 3 and target.std() > 0 and ranker_scores.std() > 0:
            self.spearman_sum += float(spearman_corrcoef(ranker_scores.float(), target.float()))
            self.kendall_sum += float(kendall_rank_corrcoef(ranker_scores.float(), target.float()))
            self.corr_rows += 1

    def compute(self) -> dict[str, torch.Tensor]:
        rows = self.rows.clamp(min=1)
        out = {}
        for k, key in enumerate(self.score_keys):
            suffix = "" if k == 0 else f"_{key}"
            out[f"top1{suffix}"] = 100 * self.top1_sum[k] / rows
            out[f"oracle{suffix}"] = 100 * self.oracle_sum[k] / rows
            out[f"judge_rank{suffix}"] = self.judge_rank_sum[k] / rows
        if self.full_order:
            out["pair_acc"] = 100 * self.pairs_correct / self.pairs_total.clamp(min=1)
            out["spearman"] = self.spearman_sum / self.corr_rows.clamp(min=1)
            out["kendall"] = self.kendall_sum / self.corr_rows.clamp(min=1)
        out["rows"] = self.rows
        return {name: value.float() for name, value in out.items()}

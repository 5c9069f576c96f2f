"""PairRankerDataModule: MixInstruct rows -> tokenized once -> fresh training pairs every epoch.

Training pairs are re-drawn each epoch from (seed, epoch), so a resumed run draws the same pairs.
Validation batches are whole rows: the module ranks each row's candidates as inference would.
Rows keep each candidate's source model, and ``model_names`` lists the training data's models: a
ranker with a model prior learns one offset for each of them.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..core.text import source_text
from ..data import LoadResult, build_pairs
from ..training.datamodule import MixInstructDataModule, Rows
from .encoding import EncodedRow, PairEncoder


class RankedRows(Rows):
    """Tokenized rows (``rows``) with their combined ``targets`` and ``raw`` per-key scores."""

    fields = ("ids", "rows", "targets", "raw")


class _PairCollator:
    def __init__(self, encoder: PairEncoder, rows: list[EncodedRow]):
        self.encoder, self.rows = encoder, rows

    def __call__(self, pairs: list[tuple[int, int, int, float]]) -> dict[str, torch.Tensor]:
        features = [self.encoder.pair(self.rows[r], i, j) for r, i, j, _ in pairs]
        return self.encoder.collate(features, labels=[label for *_, label in pairs])


class _RowCollator:
    def __init__(self, data: RankedRows):
        self.data = data

    def __call__(self, indices: list[int]) -> RankedRows:
        return self.data.select(indices)


class PairRankerDataModule(MixInstructDataModule):
    """
    Args:
        pair_strategy / pairs_per_row / ties / tie_eps: how training pairs are drawn (``build_pairs``;
            ``rank_distance`` favours pairs far apart in the row's order, whose label is clear).
        batch_size: training pairs per step. val_batch_size: rows per validation step (the full
            matrix costs N·(N-1) passes a row).
        Everything else: see :class:`blendkit.training.datamodule.MixInstructDataModule`.
    """

    def __init__(self, pair_strategy: str = "random", pairs_per_row: int = 8, ties: str = "skip",
                 tie_eps: float = 1e-6, batch_size: int = 16, val_batch_size: int = 4, **kwargs):
        super().__init__(batch_size=batch_size, val_batch_size=val_batch_size, **kwargs)
        # Validate pair options now, not after minutes of tokenizing.
        build_pairs(np.zeros(2), pair_strategy, pairs_per_row, ties, tie_eps)

    @property
    def encoder(self) -> PairEncoder:
        return self.trainer.lightning_module.pair_encoder

    def prepare(self, result: LoadResult) -> RankedRows:
        ds = result.dataset
        candidates = ds["candidates"]
        rows = self.encoder.encode_rows([source_text(q, x) for q, x in zip(ds["instruction"], ds["input"])],
                                        [[c["text"] for c in cands] for cands in candidates],
                                        [[c["model"] for c in cands] for cands in candidates])
        targets = [self.score_spec.combine(cands) for cands in candidates]
        raw = [np.array([[c["scores"][k] for k in self.score_spec.keys] for c in cands]) for cands in candidates]
        return RankedRows(list(ds["id"]), rows, targets, raw)

    @property
    def model_names(self) -> list[str]:
        """The source models of the training candidates, sorted (empty before ``setup``)."""
        if self.train_data is None:
            return []
        return sorted({name for row in self.train_data.rows for name in row.models or [] if name})

    def train_pairs(self, epoch: int) -> list[tuple[int, int, int, float]]:
        """The epoch's pairs (row, i, j, label), reproducible from (seed, epoch)."""
        rng = np.random.default_rng([self.hparams.seed, epoch])
        h = self.hparams
        return [(r, i, j, label)
                for r, target in enumerate(self.train_data.targets)
                for i, j, label in build_pairs(target, h.pair_strategy, h.pairs_per_row, h.ties, h.tie_eps, rng)]

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_pairs(self.epoch), batch_size=self.hparams.batch_size, shuffle=True,
                          generator=self.epoch_generator(), num_workers=self.hparams.num_workers,
                          collate_fn=_PairCollator(self.encoder, self.train_data.rows))

    def val_dataloader(self) -> DataLoader | list:
        if self.val_data is None:
            return []
        return DataLoader(list(range(len(self.val_data))), batch_size=self.hparams.val_batch_size,
                          collate_fn=_RowCollator(self.val_data), num_workers=0)

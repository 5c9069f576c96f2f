"""PairRankerDataModule: MixInstruct rows -> tokenized once -> fresh training pairs every epoch.

Training pairs are re-drawn each epoch from (seed, epoch), so a resumed run draws the same pairs.
By default each batch holds pairs of similar length (``batch_order: length``), so little of a batch is padding;
the batches themselves come in random order.
Validation batches are whole rows: the module ranks each row's candidates as inference would.
Rows keep each candidate's source model, and ``model_names`` lists the training data's models: a
ranker with a model prior learns one offset for each of them.
"""

from __future__ import annotations

from typing import Sequence

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


BATCH_ORDERS = ("length", "random")


def length_grouped_order(lengths: Sequence[int], batch_size: int, seed: int, batches_per_group: int = 16) -> list[int]:
    """An order of the items in which each run of ``batch_size`` holds items of similar length, the runs in
    random order (the one short run, if any, last); the same for the same ``seed``.

    Why: a batch is padded to its longest item, and in random batches of PairRanker pairs about a fifth of
    the tokens are padding (AlpacaEval-Mix at 48/96 tokens). Sorting all items by length would put the same
    neighbours together every epoch; instead the items are shuffled, cut into groups of ``batches_per_group``
    runs, sorted by length within each group and cut into runs, and the full runs are shuffled. Groups of 16
    runs keep most of the gain (AlpacaEval-Mix pairs: batches padded to 202 tokens a pair for 196 real, against
    245 in random batches; 198 with groups of 64) while a batch still mixes ~11 of its 16 pairs' rows (64: ~9.5;
    a row's pairs share a source length, so they cluster when sorted).

    Returning an order (not a batch sampler) keeps the DataLoader plain: under DDP Lightning's sequential
    DistributedSampler deals the items of each run of ``batch_size`` = per-device batch x devices round-robin,
    so every device's batch comes from one run.
    """
    if batch_size < 1:
        raise ValueError(f"data.batch_size must be at least 1, got {batch_size}")
    lengths = torch.as_tensor(list(lengths), dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    shuffled = torch.randperm(len(lengths), generator=generator)
    group = batch_size * batches_per_group
    runs = []
    for start in range(0, len(shuffled), group):
        members = shuffled[start:start + group]
        members = members[torch.argsort(lengths[members], stable=True, descending=True)]
        runs += [members[k:k + batch_size].tolist() for k in range(0, len(members), batch_size)]
    short = [runs.pop()] if runs and len(runs[-1]) < batch_size else []   # last, so later runs stay aligned
    return [k for run in [runs[i] for i in torch.randperm(len(runs), generator=generator).tolist()] + short
            for k in run]


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
        batch_order: ``length`` (the default): each batch holds pairs of similar length, in random batch order
            (``length_grouped_order``; 2% of the tokens are padding instead of 20% on AlpacaEval-Mix at 48/96
            tokens); ``random``: uniformly shuffled pairs.
        Everything else: see :class:`blendkit.training.datamodule.MixInstructDataModule`.
    """

    def __init__(self, pair_strategy: str = "random", pairs_per_row: int = 8, ties: str = "skip",
                 tie_eps: float = 1e-6, batch_size: int = 16, val_batch_size: int = 4, batch_order: str = "length",
                 **kwargs):
        super().__init__(batch_size=batch_size, val_batch_size=val_batch_size, **kwargs)
        if batch_order not in BATCH_ORDERS:
            raise ValueError(f"data.batch_order must be one of {BATCH_ORDERS}, got {batch_order!r}")
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

    def pair_lengths(self, pairs: Sequence[tuple[int, int, int, float]]) -> list[int]:
        """Tokens of each pair's sequence, less the framing tokens every pair has alike (enough to sort by)."""
        rows = self.train_data.rows
        return [len(rows[r].source.ids) + len(rows[r].candidates[i].ids) + len(rows[r].candidates[j].ids)
                for r, i, j, _ in pairs]

    def train_dataloader(self) -> DataLoader:
        h = self.hparams
        pairs = self.train_pairs(self.epoch)
        collate = _PairCollator(self.encoder, self.train_data.rows)
        # Overfitting (trainer.overfit_batches) trains on the first batches only, a fixed sample that should look
        # like the data: plain batches (Lightning turns their shuffling off), not runs of one length.
        if h.batch_order == "random" or getattr(self.trainer, "overfit_batches", 0):
            return DataLoader(pairs, batch_size=h.batch_size, shuffle=True, generator=self.epoch_generator(),
                              num_workers=h.num_workers, collate_fn=collate)
        devices = getattr(self.trainer, "world_size", 1) or 1   # under DDP a run of the order feeds every device
        order = length_grouped_order(self.pair_lengths(pairs), h.batch_size * devices,
                                     self.epoch_generator().initial_seed())
        return DataLoader([pairs[k] for k in order], batch_size=h.batch_size, shuffle=False,
                          num_workers=h.num_workers, collate_fn=collate)

    def val_dataloader(self) -> DataLoader | list:
        if self.val_data is None:
            return []
        return DataLoader(list(range(len(self.val_data))), batch_size=self.hparams.val_batch_size,
                          collate_fn=_RowCollator(self.val_data), num_workers=0)

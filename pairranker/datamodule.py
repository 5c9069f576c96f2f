"""PairRankerDataModule: MixInstruct rows -> tokenized once -> fresh training pairs every epoch.

Training pairs are re-drawn each epoch from a seed and the epoch number (so a resumed run draws the
same pairs), which needs ``trainer.reload_dataloaders_every_n_epochs: 1`` (set in every recipe).
Validation batches are whole rows: the module ranks each row's candidates as inference would.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader

from ..data import ScoreSpec, build_pairs, load_mixinstruct
from ..data.text import source_text
from .encoding import EncodedRow, PairEncoder


class RankedRows:
    """Tokenized rows with their targets; a plain object, so Lightning does not try to move it."""

    def __init__(self, ids: list[str], rows: list[EncodedRow], targets: list[np.ndarray], raw: list[np.ndarray]):
        self.ids, self.rows, self.targets, self.raw = ids, rows, targets, raw

    def __len__(self) -> int:
        return len(self.rows)

    def select(self, indices: Sequence[int]) -> "RankedRows":
        return RankedRows(*([part[k] for k in indices] for part in (self.ids, self.rows, self.targets, self.raw)))


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


class PairRankerDataModule(pl.LightningDataModule):
    """
    Args:
        train_file / val_file: MixInstruct data (see ``blendkit.data.load_mixinstruct``).
        train_pool / val_pool: candidate pools (list of model names, a file of names, or None for all).
            Train on all candidates; evaluate on the pool you will rank at inference.
        score_keys / score_weights / score_normalize: what "better" means (``blendkit.data.ScoreSpec``).
        pair_strategy / pairs_per_row / ties / tie_eps: how training pairs are drawn (``build_pairs``).
        batch_size: training pairs per step. val_rows_per_batch: rows per validation step.
        val_limit: rank only the first N validation rows (full matrix costs N·(N-1) passes a row).
        on_error: ``raise`` on the first bad row, or ``skip`` bad rows and report them.
    """

    def __init__(
        self,
        train_file: str | None = None,
        val_file: str | None = None,
        train_pool: str | list[str] | None = None,
        val_pool: str | list[str] | None = None,
        score_keys: list[str] = ["judge"],  # noqa: B006 (LightningCLI needs a literal default)
        score_weights: list[float] | None = None,
        score_normalize: str = "none",
        pair_strategy: str = "random",
        pairs_per_row: int = 8,
        ties: str = "skip",
        tie_eps: float = 1e-6,
        batch_size: int = 16,
        val_rows_per_batch: int = 4,
        val_limit: int | None = None,
        num_workers: int = 0,
        on_error: str = "raise",
        seed: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.score_spec = ScoreSpec(tuple(score_keys), tuple(score_weights) if score_weights else None, score_normalize)
        # Validate pair options now, not after minutes of tokenizing.
        build_pairs(np.zeros(2), pair_strategy, pairs_per_row, ties, tie_eps)
        self.train_data: RankedRows | None = None
        self.val_data: RankedRows | None = None

    @property
    def score_keys(self) -> tuple[str, ...]:
        return self.score_spec.keys

    def _load(self, path: str, pool, encoder: PairEncoder, what: str) -> RankedRows:
        result = load_mixinstruct(path, pool=pool, required_scores=self.score_spec.keys,
                                  on_error=self.hparams.on_error)
        rank_zero_info(f"[blendkit] {what}: {result.summary()}")
        for message in result.skip_messages()[:5]:
            rank_zero_warn(f"[blendkit] {message}")
        ds = result.dataset
        candidates = ds["candidates"]
        rows = encoder.encode_rows([source_text(q, x) for q, x in zip(ds["instruction"], ds["input"])],
                                   [[c["text"] for c in cands] for cands in candidates])
        targets = [self.score_spec.combine(cands) for cands in candidates]
        raw = [np.array([[c["scores"][k] for k in self.score_spec.keys] for c in cands]) for cands in candidates]
        return RankedRows(list(ds["id"]), rows, targets, raw)

    def setup(self, stage: str) -> None:
        encoder: PairEncoder = self.trainer.lightning_module.pair_encoder
        if stage == "fit" and self.train_data is None:
            if not self.hparams.train_file:
                raise ValueError("data.train_file is required to fit a ranker.")
            self.train_data = self._load(self.hparams.train_file, self.hparams.train_pool, encoder, "train")
        if stage in ("fit", "validate") and self.val_data is None and self.hparams.val_file:
            self.val_data = self._load(self.hparams.val_file, self.hparams.val_pool, encoder, "val")
            if self.hparams.val_limit:
                self.val_data = self.val_data.select(range(min(self.hparams.val_limit, len(self.val_data))))

    def train_pairs(self, epoch: int) -> list[tuple[int, int, int, float]]:
        """The epoch's pairs (row, i, j, label), reproducible from (seed, epoch)."""
        rng = np.random.default_rng([self.hparams.seed, epoch])
        h = self.hparams
        return [(r, i, j, label)
                for r, target in enumerate(self.train_data.targets)
                for i, j, label in build_pairs(target, h.pair_strategy, h.pairs_per_row, h.ties, h.tie_eps, rng)]

    def train_dataloader(self) -> DataLoader:
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        pairs = self.train_pairs(epoch)
        generator = torch.Generator().manual_seed(self.hparams.seed * 100_003 + epoch)
        return DataLoader(pairs, batch_size=self.hparams.batch_size, shuffle=True, generator=generator,
                          collate_fn=_PairCollator(self.trainer.lightning_module.pair_encoder, self.train_data.rows),
                          num_workers=self.hparams.num_workers)

    def val_dataloader(self) -> DataLoader | list:
        if self.val_data is None:
            return []
        return DataLoader(list(range(len(self.val_data))), batch_size=self.hparams.val_rows_per_batch,
                          collate_fn=_RowCollator(self.val_data), num_workers=0)

"""MixInstructDataModule: MixInstruct files -> validated rows -> a component's training and validation data.

Written once here: which files and pools, what "better" means (``ScoreSpec``), what happens to bad
rows (``on_error``), the load report, the validation row limit, and the per-epoch random generator
(seeded by ``seed`` and the epoch, so a resumed run draws the same batches; recipes set
``trainer.reload_dataloaders_every_n_epochs: 1``). A component fills in ``prepare`` (rows as it
needs them) and its two dataloaders.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn

from ..core.errors import PoolError
from ..data import LoadResult, ScoreSpec, load_mixinstruct


class Rows:
    """Column lists of equal length (``fields``), selectable by row index; a plain object, so Lightning
    does not try to move it between devices."""

    fields: tuple[str, ...] = ()

    def __init__(self, *columns: list):
        for name, column in zip(self.fields, columns, strict=True):
            setattr(self, name, column)

    def __len__(self) -> int:
        return len(getattr(self, self.fields[0]))

    def select(self, indices) -> "Rows":
        return type(self)(*([getattr(self, name)[k] for k in indices] for name in self.fields))


class MixInstructDataModule(pl.LightningDataModule):
    """
    Args (shared by every component; each also takes its own):
        train_file / val_file: MixInstruct data (see ``blendkit.data.load_mixinstruct``).
        train_pool / val_pool: candidate pools (a list of model names, a file of names, or None for all).
            Train on all candidates; evaluate on the pool you will use at inference.
        score_keys / score_weights / score_normalize: what "better" means (``blendkit.data.ScoreSpec``).
        batch_size: training items per step. val_batch_size: rows per validation step.
        val_limit: use only the first N validation rows.
        on_error: ``raise`` on the first bad row, or ``skip`` bad rows and report them.
        seed: pairs, orders and batches are drawn from (seed, epoch).
    """

    load_options: dict = {}   # extra ``load_mixinstruct`` options of a component

    def __init__(
        self,
        train_file: str | None = None,
        val_file: str | None = None,
        train_pool: str | list[str] | None = None,
        val_pool: str | list[str] | None = None,
        score_keys: list[str] = ["judge"],  # noqa: B006 (LightningCLI needs a literal default)
        score_weights: list[float] | None = None,
        score_normalize: str = "none",
        batch_size: int = 16,
        val_batch_size: int = 4,
        val_limit: int | None = None,
        num_workers: int = 0,
        on_error: str = "raise",
        seed: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()   # the component's own arguments are collected too
        self.score_spec = ScoreSpec(tuple(score_keys), tuple(score_weights) if score_weights else None, score_normalize)
        self.train_data: Rows | None = None
        self.val_data: Rows | None = None

    @property
    def score_keys(self) -> tuple[str, ...]:
        return self.score_spec.keys

    def prepare(self, result: LoadResult) -> Rows:
        """The component's rows from validated data."""
        raise NotImplementedError

    def load(self, path: str, pool, what: str) -> Rows:
        try:
            result = load_mixinstruct(path, pool=pool, required_scores=self.score_spec.keys,
                                      on_error=self.hparams.on_error, **self.load_options)
        except PoolError as err:   # say where the pool came from: often a recipe setting made for the sample
            raise PoolError(err.pool, err.source, err.location, err.field, err.problem,
                            f"{err.hint} This pool is the setting data.{what}_pool = {pool!r} (the packaged recipes "
                            f"set it to the sample's twelve models): pass --data.{what}_pool null to keep every "
                            f"candidate, or --data.{what}_pool FILE naming your models, one a line.".strip()) from None
        rank_zero_info(f"[blendkit] {what}: {result.summary()}")
        for message in result.skip_messages()[:5]:
            rank_zero_warn(f"[blendkit] {message}")
        return self.prepare(result)

    def setup(self, stage: str) -> None:
        h = self.hparams
        if stage == "fit" and self.train_data is None:
            if not h.train_file:
                raise ValueError("data.train_file is required to fit.")
            self.train_data = self.load(h.train_file, h.train_pool, "train")
        if stage in ("fit", "validate") and self.val_data is None and h.val_file:
            rows = self.load(h.val_file, h.val_pool, "val")
            self.val_data = rows.select(range(min(h.val_limit, len(rows)))) if h.val_limit else rows

    @property
    def epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def epoch_generator(self) -> torch.Generator:
        """The random generator of this epoch's batches."""
        return torch.Generator().manual_seed(self.hparams.seed * 100_003 + self.epoch)

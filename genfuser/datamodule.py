"""GenFuserDataModule: each row -> (instruction + its top-K candidates by score) -> reference output.

Training follows LLM-Blender's recipe: the K candidates with the best scores (the oracle ranking)
are fused into the reference answer. Their order is shuffled each time a row is drawn
(``shuffle_candidates``) so the fuser cannot assume the first one is best. Validation keeps the
best-first order, as a ranker would give it, and carries the top-1 candidate to compare against.
"""

from __future__ import annotations

import random

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader

from ..data import ScoreSpec, load_mixinstruct
from ..data.text import source_text
from .formatting import FuserFormatter


class FuserRows:
    """Rows ready for the fuser: prompt, top-K texts (best first), reference, ids and source models."""

    def __init__(self, ids, prompts, candidates, models, references):
        self.ids, self.prompts, self.candidates, self.models, self.references = ids, prompts, candidates, models, references

    def __len__(self) -> int:
        return len(self.ids)

    def select(self, indices) -> "FuserRows":
        parts = (self.ids, self.prompts, self.candidates, self.models, self.references)
        return FuserRows(*([part[k] for k in indices] for part in parts))


def top_k_rows(result, spec: ScoreSpec, top_k: int) -> FuserRows:
    """Pick each row's best ``top_k`` candidates by ``spec`` (best first)."""
    ds = result.dataset
    ids, prompts, texts, models, refs = [], [], [], [], []
    for row_id, instruction, input_text, output, cands in zip(ds["id"], ds["instruction"], ds["input"], ds["output"],
                                                                ds["candidates"]):
        scores = spec.combine(cands)
        order = sorted(range(len(cands)), key=lambda i: (-scores[i], i))[:top_k]
        ids.append(row_id)
        prompts.append(source_text(instruction, input_text))
        texts.append([cands[i]["text"] for i in order])
        models.append([cands[i]["model"] for i in order])
        refs.append(output)
    return FuserRows(ids, prompts, texts, models, refs)


class _TrainCollator:
    def __init__(self, formatter: FuserFormatter, rows: FuserRows, shuffle: bool, seed: int):
        self.formatter, self.rows, self.shuffle = formatter, rows, shuffle
        self.rng = random.Random(seed)

    def __call__(self, indices: list[int]):
        candidates = []
        for k in indices:
            texts = list(self.rows.candidates[k])
            if self.shuffle:
                self.rng.shuffle(texts)
            candidates.append(texts)
        sources = self.formatter.encode_sources([self.rows.prompts[k] for k in indices], candidates)
        targets = self.formatter.encode_targets([self.rows.references[k] for k in indices])
        return self.formatter.collate(sources, targets)


class _ValCollator:
    def __init__(self, formatter: FuserFormatter, rows: FuserRows):
        self.formatter, self.rows = formatter, rows

    def __call__(self, indices: list[int]) -> dict:
        rows = self.rows.select(indices)
        batch = self.formatter.collate(self.formatter.encode_sources(rows.prompts, rows.candidates),
                                       self.formatter.encode_targets(rows.references))
        batch["rows"] = rows
        return batch


class GenFuserDataModule(pl.LightningDataModule):
    """
    Args:
        train_file / val_file: MixInstruct data with reference ``output`` answers.
        train_pool / val_pool: candidate pools (names, a file of names, or None for all).
        score_keys / score_weights / score_normalize: how the top-K are chosen (``ScoreSpec``).
        shuffle_candidates: shuffle the K candidates' order in training.
        batch_size / eval_batch_size: rows per training / validation step.
        val_limit: only the first N validation rows (generation is slow on CPU).
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
        shuffle_candidates: bool = True,
        batch_size: int = 8,
        eval_batch_size: int = 8,
        val_limit: int | None = None,
        num_workers: int = 0,
        on_error: str = "raise",
        seed: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.score_spec = ScoreSpec(tuple(score_keys), tuple(score_weights) if score_weights else None, score_normalize)
        self.train_rows: FuserRows | None = None
        self.val_rows: FuserRows | None = None

    def _load(self, path: str, pool, what: str) -> FuserRows:
        result = load_mixinstruct(path, pool=pool, required_scores=self.score_spec.keys, min_candidates=1,
                                  require_output=True, on_error=self.hparams.on_error)
        rank_zero_info(f"[blendkit] {what}: {result.summary()}")
        for message in result.skip_messages()[:5]:
            rank_zero_warn(f"[blendkit] {message}")
        return top_k_rows(result, self.score_spec, self.trainer.lightning_module.formatter.top_k)

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.train_rows is None:
            if not self.hparams.train_file:
                raise ValueError("data.train_file is required to fit a fuser.")
            self.train_rows = self._load(self.hparams.train_file, self.hparams.train_pool, "train")
        if stage in ("fit", "validate") and self.val_rows is None and self.hparams.val_file:
            rows = self._load(self.hparams.val_file, self.hparams.val_pool, "val")
            limit = self.hparams.val_limit
            self.val_rows = rows.select(range(min(limit, len(rows)))) if limit else rows

    def train_dataloader(self) -> DataLoader:
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        formatter = self.trainer.lightning_module.formatter
        import torch

        generator = torch.Generator().manual_seed(self.hparams.seed * 100_003 + epoch)
        return DataLoader(list(range(len(self.train_rows))), batch_size=self.hparams.batch_size, shuffle=True,
                          generator=generator, num_workers=self.hparams.num_workers,
                          collate_fn=_TrainCollator(formatter, self.train_rows, self.hparams.shuffle_candidates,
                                                    self.hparams.seed * 7919 + epoch))

    def val_dataloader(self) -> DataLoader | list:
        if self.val_rows is None:
            return []
        return DataLoader(list(range(len(self.val_rows))), batch_size=self.hparams.eval_batch_size,
                          collate_fn=_ValCollator(self.trainer.lightning_module.formatter, self.val_rows))

"""GenFuserDataModule: each row -> (instruction + its top-K candidates by score) -> reference output.

Training follows LLM-Blender's recipe: the K candidates with the best scores (the oracle ranking)
are fused into the reference answer. Their order is shuffled each time a row is drawn
(``shuffle_candidates``) so the fuser cannot assume the first one is best. Validation keeps the
best-first order, as a ranker would give it, and carries the top-1 candidate to compare against.
"""

from __future__ import annotations

import random

from torch.utils.data import DataLoader

from ..core.text import source_text
from ..data import LoadResult, ScoreSpec
from ..training.datamodule import MixInstructDataModule, Rows
from .causal_formatting import CausalFuserFormatter
from .formatting import FuserFormatter


class FuserRows(Rows):
    """Rows ready for the fuser: prompt, top-K texts (best first), their source models, reference."""

    fields = ("ids", "prompts", "candidates", "models", "references")


def top_k_rows(result: LoadResult, spec: ScoreSpec, top_k: int) -> FuserRows:
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
    def __init__(self, formatter: FuserFormatter | CausalFuserFormatter, rows: FuserRows, shuffle: bool, seed: int):
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
    """The loss batch, plus the rows and their encoded sources (validation generates from these)."""

    def __init__(self, formatter: FuserFormatter | CausalFuserFormatter, rows: FuserRows):
        self.formatter, self.rows = formatter, rows

    def __call__(self, indices: list[int]) -> dict:
        rows = self.rows.select(indices)
        sources = self.formatter.encode_sources(rows.prompts, rows.candidates)
        batch = self.formatter.collate(sources, self.formatter.encode_targets(rows.references))
        batch.update(rows=rows, sources=sources)
        return batch


class GenFuserDataModule(MixInstructDataModule):
    """
    Args:
        shuffle_candidates: shuffle the K candidates' order in training.
        batch_size / val_batch_size: rows per training / validation step.
        score_keys / score_weights / score_normalize: how the top-K are chosen (``ScoreSpec``).
        Everything else: see :class:`blendkit.training.datamodule.MixInstructDataModule`.
    """

    load_options = {"min_candidates": 1, "require_output": True}

    def __init__(self, shuffle_candidates: bool = True, batch_size: int = 8, val_batch_size: int = 8, **kwargs):
        super().__init__(batch_size=batch_size, val_batch_size=val_batch_size, **kwargs)

    @property
    def formatter(self) -> FuserFormatter | CausalFuserFormatter:
        return self.trainer.lightning_module.formatter

    def prepare(self, result: LoadResult) -> FuserRows:
        return top_k_rows(result, self.score_spec, self.formatter.top_k)

    def train_dataloader(self) -> DataLoader:
        h = self.hparams
        return DataLoader(list(range(len(self.train_data))), batch_size=h.batch_size, shuffle=True,
                          generator=self.epoch_generator(), num_workers=h.num_workers,
                          collate_fn=_TrainCollator(self.formatter, self.train_data, h.shuffle_candidates,
                                                    h.seed * 7919 + self.epoch))

    def val_dataloader(self) -> DataLoader | list:
        if self.val_data is None:
            return []
        return DataLoader(list(range(len(self.val_data))), batch_size=self.hparams.val_batch_size,
                          collate_fn=_ValCollator(self.formatter, self.val_data))

"""Fuser: the small inference API over a trained GenFuser.

    >>> fuser = Fuser.from_pretrained("runs/genfuser/minilm_cpu/export")          # doctest: +SKIP
    >>> fuser.fuse(["Name a prime."], [["7 is prime.", "2 is the only even prime.", "9"]])
    [FuseResult(id=None, fused='…', fused_from=[0, 1, 2])]

Candidates are taken best first: give them already ranked, pass ``ranks`` (1 = best, as
``blendkit rank`` writes them), or a ``ranker`` (a :class:`blendkit.pairranker.Ranker`) to rank them
here. Any ``generate`` option passes through (``num_beams``, ``do_sample``, ``max_new_tokens``, ...);
decoding is greedy unless they say otherwise. The same API serves causal and seq2seq fusers: the
model's config decides the formatting (``formatter_for``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Sequence

import torch
from tqdm.auto import tqdm

from ..core.text import source_text
from .config import SETTINGS_FILE
from .formatting import formatter_for
from .model import load_fuser


@dataclass
class FuseResult:
    id: str | None
    fused: str
    fused_from: list[int]  # indices into the row's candidates, best first


class Fuser:
    """``Fuser(model, tokenizer, top_k=3, ...)``: the keywords are :class:`FuserSettings` (budgets, top_k)."""

    def __init__(self, model, tokenizer, batch_size: int = 8, device: str | torch.device | None = None, **settings):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.formatter = formatter_for(model, tokenizer, **settings)
        self.batch_size = batch_size
        if device is not None:
            self.model.to(device)

    @classmethod
    def from_pretrained(cls, path: str, device: str | None = None, dtype: torch.dtype | None = None,
                        batch_size: int = 8, base_model: str | None = None) -> "Fuser":
        """Load a fuser folder written by training (``export_dir``) or ``blendkit export``. A LoRA adapter
        folder loads onto the base model it names (or ``base_model``: Hub id, packaged alias or folder)."""
        model, tokenizer = load_fuser(path, dtype, base_model=base_model)
        settings_path = os.path.join(path, SETTINGS_FILE)
        settings = {}
        if os.path.exists(settings_path):
            with open(settings_path, encoding="utf-8") as f:
                settings = json.load(f)
        return cls(model, tokenizer, batch_size=batch_size, device=device, **settings)

    @property
    def top_k(self) -> int:
        return self.formatter.top_k

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def select(self, candidates: Sequence[str], ranks: Sequence[int] | None, top_k: int) -> list[int]:
        """Indices of the candidates to fuse, best first."""
        if ranks is None:
            return list(range(min(top_k, len(candidates))))
        if len(ranks) != len(candidates):
            raise ValueError(f"got {len(ranks)} ranks for {len(candidates)} candidates")
        return sorted(range(len(candidates)), key=lambda i: (ranks[i], i))[:top_k]

    def fuse(
        self,
        instructions: Sequence[str] | str,
        candidates: Sequence[Sequence[str]] | Sequence[str],
        top_k: int | None = None,
        ranks: Sequence[Sequence[int]] | None = None,
        ranker=None,
        inputs: Sequence[str] | None = None,
        ids: Sequence[str] | None = None,
        progress: bool = False,
        models: Sequence[Sequence[str | None]] | Sequence[str | None] | None = None,
        **generate_kwargs,
    ) -> list[FuseResult]:
        """Fuse each row's top-K candidates into one answer.

        The top-K are taken from ``ranks`` (1 = best, per candidate), else from ``ranker``'s ranking, else
        the first K. ``models``, shaped like ``candidates``, names each candidate's source model for a
        ranker with a model prior.
        """
        if isinstance(instructions, str):
            instructions, candidates = [instructions], [candidates]  # type: ignore[list-item]
            ranks = [ranks] if ranks is not None and ranks and isinstance(ranks[0], int) else ranks
            inputs = [inputs] if isinstance(inputs, str) else inputs
            models = [models] if models is not None else None  # type: ignore[list-item]
        top_k = top_k or self.top_k
        if top_k > self.top_k:
            raise ValueError(f"top_k={top_k} but this fuser was trained for at most {self.top_k} candidates")
        if len(instructions) != len(candidates):
            raise ValueError(f"got {len(instructions)} instructions but {len(candidates)} candidate lists")
        for k, texts in enumerate(candidates):
            if not texts:
                raise ValueError(f"row {k} ({ids[k] if ids else 'no id'}) has no candidates to fuse")
        inputs = list(inputs) if inputs is not None else [""] * len(instructions)
        if ranker is not None and ranks is None:
            ranks = [r.ranks for r in ranker.rank(list(instructions), [list(c) for c in candidates], inputs=inputs,
                                                  models=models)]
        chosen = [self.select(texts, ranks[k] if ranks is not None else None, top_k)
                  for k, texts in enumerate(candidates)]
        sources = self.formatter.encode_sources([source_text(q, x) for q, x in zip(instructions, inputs)],
                                                [[texts[i] for i in pick] for texts, pick in zip(candidates, chosen)])
        options = {"max_new_tokens": self.formatter.target_max_length, "num_beams": 1, "do_sample": False,
                   **generate_kwargs}
        order = sorted(range(len(sources)), key=lambda k: len(sources[k]))  # similar lengths share a batch
        fused: list[str] = [""] * len(sources)
        with torch.inference_mode():
            for start in tqdm(range(0, len(order), self.batch_size), desc="fusing", unit="batch",
                              disable=not progress, leave=False):
                chunk = order[start:start + self.batch_size]
                for k, text in zip(chunk, self.formatter.generate(self.model, [sources[k] for k in chunk], **options)):
                    fused[k] = text
        ids = list(ids) if ids is not None else [None] * len(sources)
        return [FuseResult(ids[k], fused[k], chosen[k]) for k in range(len(sources))]

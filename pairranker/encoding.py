"""Tokenize rows once, then assemble (source, A, B) pair sequences by concatenating token ids.

Every text of a row is tokenized a single time (not once per pair it appears in) and truncated to
its own budget; a pair is then just a concatenation, which keeps N·(N-1) comparisons cheap.
Encoder tokenizers frame the parts with CLS and SEP; decoder tokenizers, which have neither, with
BOS and EOS (a framing token the tokenizer lacks altogether is left out).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from ..core.markers import encode_user_text
from .config import CANDIDATE_A_TOKEN, CANDIDATE_B_TOKEN, SOURCE_TOKEN, PairRankerConfig


def length_feature(tokens: int) -> float:
    """A candidate's length as the head (and a length-aware prior) reads it: log1p(tokens) / 8."""
    return math.log1p(tokens) / 8.0


@dataclass
class EncodedText:
    ids: list[int]          # truncated to the budget
    full_length: int        # length in tokens before truncation


@dataclass
class EncodedRow:
    source: EncodedText
    candidates: list[EncodedText]
    models: list[str | None] | None = None   # each candidate's source model, when known


class PairEncoder:
    """Turns texts into the ranker's pair inputs; ``collate`` pads a list of pairs into a batch."""

    def __init__(self, tokenizer, config: PairRankerConfig):
        self.tokenizer = tokenizer
        self.config = config
        markers = tokenizer.convert_tokens_to_ids([SOURCE_TOKEN, CANDIDATE_A_TOKEN, CANDIDATE_B_TOKEN])
        if tokenizer.unk_token_id is not None and tokenizer.unk_token_id in markers:
            raise ValueError("the tokenizer lacks the ranker's marker tokens; load it from the ranker's directory "
                             "(or build the ranker with PairRankerModel.from_backbone).")
        self.source_marker, self.a_marker, self.b_marker = markers
        cls_id = _first_id(tokenizer.cls_token_id, tokenizer.bos_token_id)
        sep_id = _first_id(tokenizer.sep_token_id, tokenizer.eos_token_id)
        self.opening = [cls_id] if cls_id is not None else []     # starts the sequence
        self.closing = [sep_id] if sep_id is not None else []     # ends each part
        self.pad_id = _first_id(tokenizer.pad_token_id, tokenizer.eos_token_id, 0)
        self.use_token_types = getattr(config.encoder, "type_vocab_size", 0) >= 2
        self.model_index = config.model_index() if config.use_model_prior else None

    def encode_texts(self, texts: Sequence[str], budget: int) -> list[EncodedText]:
        # An answer that contains "<candidate_b>" must not produce the marker itself.
        return [EncodedText(seq[:budget], len(seq)) for seq in encode_user_text(self.tokenizer, texts)]

    def encode_rows(self, sources: Sequence[str], candidate_lists: Sequence[Sequence[str]],
                    model_lists: Sequence[Sequence[str | None] | None] | None = None) -> list[EncodedRow]:
        """Batch-tokenize many rows at once (sources and candidates in two tokenizer calls).
        ``model_lists``: each row's candidate source models (for a ranker with a model prior)."""
        encoded_sources = self.encode_texts(sources, self.config.source_max_length)
        flat = [text for texts in candidate_lists for text in texts]
        encoded_flat = self.encode_texts(flat, self.config.candidate_max_length)
        model_lists = model_lists if model_lists is not None else [None] * len(candidate_lists)
        rows, start = [], 0
        for k, (src, texts, models) in enumerate(zip(encoded_sources, candidate_lists, model_lists, strict=True)):
            if models is not None and len(models) != len(texts):
                raise ValueError(f"models[{k}] names {len(models)} source models for {len(texts)} candidates.")
            rows.append(EncodedRow(src, encoded_flat[start:start + len(texts)],
                                   list(models) if models is not None else None))
            start += len(texts)
        return rows

    def length_features(self, text: EncodedText) -> list[float]:
        return [length_feature(text.full_length), float(text.full_length > self.config.candidate_max_length)]

    def pair(self, row: EncodedRow, i: int, j: int) -> dict:
        """Inputs for "is candidate i better than candidate j?" (as lists, unpadded)."""
        a, b = row.candidates[i], row.candidates[j]
        src_part = [*self.opening, self.source_marker, *row.source.ids, *self.closing]
        a_part = [self.a_marker, *a.ids, *self.closing]
        b_part = [self.b_marker, *b.ids, *self.closing]
        pair = {
            "input_ids": src_part + a_part + b_part,
            "segment_ids": [0] * len(src_part) + [1] * len(a_part) + [2] * len(b_part),
            "length_features": [self.length_features(a), self.length_features(b)],
        }
        if self.model_index is not None:
            models = row.models or [None] * len(row.candidates)
            pair["model_ids"] = [self.model_index.get(models[i], 0), self.model_index.get(models[j], 0)]
        return pair

    def collate(self, pairs: Sequence[dict], labels: Sequence[float] | None = None) -> dict[str, torch.Tensor]:
        width = max(len(p["input_ids"]) for p in pairs)
        input_ids = torch.full((len(pairs), width), self.pad_id, dtype=torch.long)
        segment_ids = torch.full((len(pairs), width), -1, dtype=torch.long)
        for k, p in enumerate(pairs):
            n = len(p["input_ids"])
            input_ids[k, :n] = torch.tensor(p["input_ids"])
            segment_ids[k, :n] = torch.tensor(p["segment_ids"])
        batch = {
            "input_ids": input_ids,
            "attention_mask": (segment_ids >= 0).long(),
            "segment_ids": segment_ids,
        }
        if self.use_token_types:
            batch["token_type_ids"] = (segment_ids > 0).long()
        if self.config.use_length_features:
            batch["length_features"] = torch.tensor([p["length_features"] for p in pairs], dtype=torch.float32)
        if self.model_index is not None:
            batch["model_ids"] = torch.tensor([p["model_ids"] for p in pairs], dtype=torch.long)
        if labels is not None:
            batch["labels"] = torch.tensor(list(labels), dtype=torch.float32)
        return batch


def _first_id(*ids: int | None) -> int | None:
    return next((i for i in ids if i is not None), None)

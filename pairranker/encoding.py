"""Tokenize rows once, then assemble (source, A, B) pair sequences by concatenating token ids.

Every text of a row is tokenized a single time (not once per pair it appears in) and truncated to
its own budget; a pair is then just a concatenation, which keeps N·(N-1) comparisons cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from ..core.markers import encode_user_text
from .config import CANDIDATE_A_TOKEN, CANDIDATE_B_TOKEN, SOURCE_TOKEN, PairRankerConfig


@dataclass
class EncodedText:
    ids: list[int]          # truncated to the budget
    full_length: int        # length in tokens before truncation


@dataclass
class EncodedRow:
    source: EncodedText
    candidates: list[EncodedText]


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
        self.cls_id = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        self.sep_id = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        if self.cls_id is None or self.sep_id is None:
            raise ValueError("the tokenizer needs a CLS/BOS and a SEP/EOS token to build pair inputs.")
        self.use_token_types = getattr(config.encoder, "type_vocab_size", 0) >= 2

    def encode_texts(self, texts: Sequence[str], budget: int) -> list[EncodedText]:
        # An answer that contains "<candidate_b>" must not produce the marker itself.
        return [EncodedText(seq[:budget], len(seq)) for seq in encode_user_text(self.tokenizer, texts)]

    def encode_rows(self, sources: Sequence[str], candidate_lists: Sequence[Sequence[str]]) -> list[EncodedRow]:
        """Batch-tokenize many rows at once (sources and candidates in two tokenizer calls)."""
        encoded_sources = self.encode_texts(sources, self.config.source_max_length)
        flat = [text for texts in candidate_lists for text in texts]
        encoded_flat = self.encode_texts(flat, self.config.candidate_max_length)
        rows, start = [], 0
        for src, texts in zip(encoded_sources, candidate_lists):
            rows.append(EncodedRow(src, encoded_flat[start:start + len(texts)]))
            start += len(texts)
        return rows

    def length_features(self, text: EncodedText) -> list[float]:
        return [math.log1p(text.full_length) / 8.0, float(text.full_length > self.config.candidate_max_length)]

    def pair(self, row: EncodedRow, i: int, j: int) -> dict:
        """Inputs for "is candidate i better than candidate j?" (as lists, unpadded)."""
        a, b = row.candidates[i], row.candidates[j]
        src_part = [self.cls_id, self.source_marker, *row.source.ids, self.sep_id]
        a_part = [self.a_marker, *a.ids, self.sep_id]
        b_part = [self.b_marker, *b.ids, self.sep_id]
        return {
            "input_ids": src_part + a_part + b_part,
            "segment_ids": [0] * len(src_part) + [1] * len(a_part) + [2] * len(b_part),
            "length_features": [self.length_features(a), self.length_features(b)],
        }

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
        if labels is not None:
            batch["labels"] = torch.tensor(list(labels), dtype=torch.float32)
        return batch

"""Marker tokens (``<source>``, ``<candidate_a>``, ``<cand1>`` ...) added to a tokenizer and a model.

Each new embedding row starts as the mean embedding of a describing word ("first", "second", ...),
not as a near-copy of the vocabulary mean: markers must be told apart from the first step, also
when the embeddings stay frozen (frozen layers, LoRA).
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn


def add_marker_tokens(tokenizer, markers: Mapping[str, str]) -> list[int]:
    """Register ``markers`` (token -> describing word) as special tokens; returns their ids."""
    tokenizer.add_special_tokens({"additional_special_tokens": list(markers)})
    return tokenizer.convert_tokens_to_ids(list(markers))


@torch.no_grad()
def init_marker_embeddings(embeddings: nn.Embedding, tokenizer, markers: Mapping[str, str]) -> None:
    """Set each marker's row to the mean embedding of its describing word's tokens."""
    for marker, word in markers.items():
        row = tokenizer.convert_tokens_to_ids(marker)
        word_ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        if not word_ids:
            raise ValueError(f"the tokenizer encodes {word!r} (describing {marker}) as no tokens")
        embeddings.weight[row] = embeddings.weight[word_ids].mean(dim=0)

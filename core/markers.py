"""Marker tokens (``<source>``, ``<candidate_a>``, ``<cand1>`` ...) and how user text is tokenized around them.

Each new embedding row starts as the mean embedding of a describing word ("first", "second", ...),
not as a near-copy of the vocabulary mean: markers must be told apart from the first step, also
when the embeddings stay frozen (frozen layers, LoRA). User text is always tokenized with
``split_special_tokens=True``, so an answer that contains the string ``<cand2>`` never becomes the
marker itself.
"""

from __future__ import annotations

from typing import Mapping, Sequence

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


def encode_user_text(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text, untruncated, without the model's framing tokens; special-token strings
    inside the text are split into ordinary tokens."""
    if not texts:
        return []
    return tokenizer(list(texts), add_special_tokens=False, truncation=False, verbose=False,
                     split_special_tokens=True)["input_ids"]

"""The seq2seq fuser's input: ``<source> instruction <cand1> A <cand2> B <cand3> C`` with a budget per part.

Each part is tokenized on its own and truncated to its budget, so every candidate keeps its share of
the encoder window however long the others are. The model's own special tokens frame the whole
sequence (``[CLS] … [SEP]`` for BERT, ``… </s>`` for T5). A causal fuser formats its prompt in
``causal_formatting.py``; ``formatter_for`` picks the one a model needs. Both formatters offer the same
methods: ``encode_sources``, ``encode_targets``, ``collate`` (the model's keyword inputs) and
``generate`` (answer texts).
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..core.errors import ConfigError
from ..training.lora import base_model
from .causal_formatting import CausalFuserFormatter
from .config import FuserSettings
from .layout import lay_out_sources, truncated_ids
from .model import SOURCE_MARKER, candidate_marker, is_causal


def formatter_for(model, tokenizer, **settings) -> "FuserFormatter | CausalFuserFormatter":
    """The formatter of ``model`` (plain or LoRA-wrapped), its position limit checked against the budgets."""
    model = base_model(model)
    if is_causal(model.config):
        return CausalFuserFormatter(tokenizer, getattr(model.config, "max_position_embeddings", None), **settings)
    positions = getattr(model.get_encoder().config, "max_position_embeddings", None)
    return FuserFormatter(tokenizer, max_positions=positions, **settings)


class FuserFormatter:
    """Encodes fuser inputs and targets with the budgets of :class:`FuserSettings` (given as keywords).
    ``max_positions``: the encoder's position limit, checked against the longest possible input."""

    def __init__(self, tokenizer, max_positions: int | None = None, **settings):
        self.settings = s = FuserSettings(**settings)
        self.tokenizer = tokenizer
        self.top_k, self.source_max_length = s.top_k, s.source_max_length
        self.candidate_max_length, self.target_max_length = s.candidate_max_length, s.target_max_length
        self.prefix, self.suffix = _framing(tokenizer)
        markers = [SOURCE_MARKER] + [candidate_marker(k) for k in range(1, s.top_k + 1)]
        ids = tokenizer.convert_tokens_to_ids(markers)
        if tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids:
            raise ConfigError(f"top_k={s.top_k} needs the markers {markers}, which this fuser's tokenizer lacks; "
                              "use a top_k no larger than the one the fuser was built with.")
        self.source_marker, self.candidate_markers = ids[0], ids[1:]
        self.eos_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        if max_positions is not None and self.source_length > max_positions:
            raise ConfigError(f"source_max_length + top_k * (candidate_max_length + 1) + framing = "
                              f"{self.source_length} exceeds the encoder's {max_positions} positions; got "
                              f"source_max_length={s.source_max_length}, "
                              f"candidate_max_length={s.candidate_max_length}, top_k={s.top_k}.")

    @property
    def source_length(self) -> int:
        """Longest possible encoder input."""
        return (len(self.prefix) + 1 + self.source_max_length + self.top_k * (1 + self.candidate_max_length)
                + len(self.suffix))

    def encode_sources(self, prompts: Sequence[str], candidate_lists: Sequence[Sequence[str]]) -> list[list[int]]:
        """Encoder inputs; ``candidate_lists[i]`` holds at most ``top_k`` texts, best first."""
        return lay_out_sources(self.tokenizer, prompts, candidate_lists, top_k=self.top_k,
                               source_max_length=self.source_max_length,
                               candidate_max_length=self.candidate_max_length,
                               opening=[*self.prefix, self.source_marker],
                               headers=[[m] for m in self.candidate_markers], closing=self.suffix)

    def encode_targets(self, texts: Sequence[str]) -> list[list[int]]:
        """Decoder labels: the text's tokens, then end-of-sequence (the model prepends its start token)."""
        return [ids + [self.eos_id] for ids in truncated_ids(self.tokenizer, texts, self.target_max_length - 1)]

    def collate(self, sources: Sequence[list[int]], targets: Sequence[list[int]] | None = None,
                ) -> dict[str, torch.Tensor]:
        width = max(len(s) for s in sources)
        input_ids = torch.full((len(sources), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(sources), width), dtype=torch.long)
        for k, seq in enumerate(sources):
            input_ids[k, :len(seq)] = torch.tensor(seq)
            attention_mask[k, :len(seq)] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if targets is not None:
            t_width = max(len(t) for t in targets)
            labels = torch.full((len(targets), t_width), -100, dtype=torch.long)
            for k, seq in enumerate(targets):
                labels[k, :len(seq)] = torch.tensor(seq)
            batch["labels"] = labels
        return batch

    def generate(self, model, sources: Sequence[list[int]], **options) -> list[str]:
        """Answers to encoder inputs (greedy unless ``options`` say otherwise)."""
        device = next(model.parameters()).device
        batch = {name: tensor.to(device) for name, tensor in self.collate(sources).items()}
        return [text.strip() for text in
                self.tokenizer.batch_decode(model.generate(**batch, **options), skip_special_tokens=True)]


def _framing(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a text ([CLS]/[SEP], </s>, <s>/</s>)."""
    plain = tokenizer("fuse", add_special_tokens=False)["input_ids"]
    framed = tokenizer("fuse", add_special_tokens=True)["input_ids"]
    for start in range(len(framed) - len(plain) + 1):
        if framed[start:start + len(plain)] == plain:
            return framed[:start], framed[start + len(plain):]
    return [], []

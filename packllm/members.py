"""The members of a pack: causal LMs with their tokenizers, speaking the primary member's vocabulary.

The first member is the *primary*: the fused model emits its tokens. A member whose vocabulary
equals the primary's passes its log-probs through unchanged (the exact fast path); any other member
carries its distribution over with a character-level `VocabMap` (see vocab.py).
"""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ..core.offline import load_error, resolve_model
from .vocab import VocabMap, same_vocabulary


class Member:
    def __init__(self, name: str, model, tokenizer, primary_tokenizer=None):
        self.name = name
        self.model = model.eval()
        self.tokenizer = tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        primary_tokenizer = primary_tokenizer if primary_tokenizer is not None else tokenizer
        self.shares_vocabulary = same_vocabulary(tokenizer, primary_tokenizer)
        primary_eos = {primary_tokenizer.eos_token_id} - {None}
        self.vocab_map = None if self.shares_vocabulary else \
            VocabMap(tokenizer, primary_tokenizer, self.eos_ids(), primary_eos).to(self.device)
        self.primary_size = len(primary_tokenizer)

    @classmethod
    def load(cls, name_or_path: str, primary_tokenizer=None, device: str | torch.device = "cpu",
             dtype: torch.dtype | None = None) -> "Member":
        path = resolve_model(name_or_path)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32, use_safetensors=True)
        except (OSError, ValueError) as error:
            raise load_error("causal LM", name_or_path, error, "a packaged model (smollm2, gemma3-270m)") from None
        return cls(name_or_path, model.to(device), tokenizer, primary_tokenizer)

    @property
    def max_positions(self) -> int:
        """The longest input the model takes (its position limit; very large when it has none)."""
        config = self.model.config
        config = getattr(config, "text_config", None) or config
        return int(getattr(config, "max_position_embeddings", None) or 1 << 20)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def log_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """Next-token logits [..., V_member] → log-probs over the primary vocabulary [..., V_primary]."""
        if self.vocab_map is not None:
            return self.vocab_map.project(logits)
        # Models may pad their output layer beyond the tokenizer; those ids are never real tokens.
        return torch.log_softmax(logits.float(), dim=-1)[..., :self.primary_size]

    def uses_template(self, chat: bool) -> bool:
        return bool(chat and self.tokenizer.chat_template)

    def format_prompt(self, prompt: str, chat: bool) -> str:
        """The text this member reads: its chat template around the prompt when it has one and chat is on.
        (A template writes its own special tokens: encode its text with ``add_special_tokens=False``.)"""
        if self.uses_template(chat):
            return self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                      add_generation_prompt=True)
        return prompt

    def eos_ids(self) -> set[int]:
        ids = self.model.generation_config.eos_token_id
        ids = set(ids if isinstance(ids, (list, tuple)) else [] if ids is None else [ids])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids


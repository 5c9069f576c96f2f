"""LoRA through peft, and getting the plain `transformers` model back out of a wrapped one."""

from __future__ import annotations

import copy

from peft import LoraConfig, get_peft_model
from torch import nn


def attention_projections(model: nn.Module) -> list[str]:
    """Default LoRA targets: the attention query/value projections, whatever the backbone calls them."""
    names = {name.split(".")[-1] for name, _ in model.named_modules()}
    for query, value in (("query", "value"), ("query_proj", "value_proj"), ("q_proj", "v_proj"), ("q", "v")):
        if query in names and value in names:
            return [query, value]
    raise ValueError("model.lora_target_modules: cannot guess the attention projections of this backbone; "
                     "name them (e.g. [query, value]).")


def wrap_lora(model: nn.Module, r: int, alpha: int, dropout: float, target_modules: list[str] | None,
              modules_to_save: list[str] | None = None, task_type: str | None = None) -> nn.Module:
    """A peft LoRA model: only adapters (and ``modules_to_save``) train."""
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout,
                        target_modules=target_modules or attention_projections(model),
                        modules_to_save=modules_to_save, task_type=task_type)
    return get_peft_model(model, config)


def base_model(model: nn.Module) -> nn.Module:
    """The `transformers` model inside a plain or peft-wrapped model (no copy, no merge)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def plain_model(model: nn.Module, merge_lora: bool = True) -> nn.Module:
    """The `transformers` model inside a (possibly peft-wrapped) model; LoRA merged into a copy."""
    if merge_lora and hasattr(model, "merge_and_unload"):
        return copy.deepcopy(model).merge_and_unload()
    return model

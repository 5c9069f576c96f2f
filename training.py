"""Pieces both Lightning modules share: AdamW with linear warm-up/decay, LoRA wrapping, exporting."""

from __future__ import annotations

import copy
import os
import tempfile
from typing import Sequence

import torch
from pytorch_lightning.utilities import rank_zero_info
from torch import nn
from transformers import get_linear_schedule_with_warmup

from .atomic import save_dir_atomically


def adamw_with_warmup(groups: Sequence[dict], weight_decay: float, warmup_ratio: float, total_steps: int) -> dict:
    """Lightning's optimizer dict: AdamW over the non-empty groups, linear warm-up then linear decay to 0.

    Each group is ``{"params": [(name, param), ...], "lr": ...}``; biases and norm weights (1-d
    tensors) get no weight decay, as usual for transformers.
    """
    split = []
    for group in groups:
        decay = [p for _, p in group["params"] if p.ndim > 1]
        no_decay = [p for _, p in group["params"] if p.ndim <= 1]
        split += [{"params": decay, "lr": group["lr"], "weight_decay": weight_decay},
                  {"params": no_decay, "lr": group["lr"], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW([g for g in split if g["params"]])
    total = max(1, int(total_steps))
    scheduler = get_linear_schedule_with_warmup(optimizer, int(warmup_ratio * total), total)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


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
    from peft import LoraConfig, get_peft_model

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


def export_model(model: nn.Module, tokenizer, directory: str, merge_lora: bool = True, what: str = "model",
                 extra_files: dict[str, str] | None = None) -> str:
    """Safetensors weights + config + tokenizer (+ extra text files), atomically replacing ``directory``.
    With LoRA and ``merge_lora=False`` only the adapter (and modules_to_save) is written."""
    model = plain_model(model, merge_lora)

    def write(tmp: str) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for name, text in (extra_files or {}).items():
            with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
                f.write(text)

    save_dir_atomically(directory, write)
    rank_zero_info(f"[blendkit] exported {what} to {os.path.abspath(directory)}")
    return directory


def tokenizer_files(tokenizer) -> dict[str, bytes]:
    """The tokenizer's saved files as bytes, to be stored inside a training checkpoint."""
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        files = {}
        for name in os.listdir(tmp):
            with open(os.path.join(tmp, name), "rb") as f:
                files[name] = f.read()
        return files


def tokenizer_from_files(files: dict[str, bytes]):
    """Inverse of :func:`tokenizer_files`."""
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            with open(os.path.join(tmp, os.path.basename(name)), "wb") as f:
                f.write(data)
        return AutoTokenizer.from_pretrained(tmp)

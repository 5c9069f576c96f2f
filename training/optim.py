"""AdamW with linear warm-up and decay, the optimizer of every blendkit recipe."""

from __future__ import annotations

from typing import Sequence

import torch
from transformers import get_linear_schedule_with_warmup


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

"""AdamW with linear warm-up and decay, the optimizer of every blendkit recipe."""

from __future__ import annotations

from typing import Sequence

import torch
from torch.utils import _foreach_utils
from transformers import get_linear_schedule_with_warmup


def adamw_with_warmup(groups: Sequence[dict], weight_decay: float, warmup_ratio: float, total_steps: int,
                      fused: bool = True) -> dict:
    """Lightning's optimizer dict: AdamW over the non-empty groups, linear warm-up then linear decay to 0.

    Each group is ``{"params": [(name, param), ...], "lr": ...}``; biases and norm weights (1-d
    tensors) get no weight decay, as usual for transformers. ``fused``: use the fused kernel where torch
    has one (see ``adamw_kernel``); False keeps torch's default (benchmarks compare the two).
    """
    split = []
    for group in groups:
        decay = [p for _, p in group["params"] if p.ndim > 1]
        no_decay = [p for _, p in group["params"] if p.ndim <= 1]
        split += [{"params": decay, "lr": group["lr"], "weight_decay": weight_decay},
                  {"params": no_decay, "lr": group["lr"], "weight_decay": 0.0}]
    split = [g for g in split if g["params"]]
    kernel = adamw_kernel([p for g in split for p in g["params"]]) if fused else {}
    optimizer = torch.optim.AdamW(split, **kernel)
    total = max(1, int(total_steps))
    scheduler = get_linear_schedule_with_warmup(optimizer, int(warmup_ratio * total), total)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def adamw_kernel(params: Sequence[torch.Tensor]) -> dict:
    """AdamW's implementation for ``params``: the fused kernel where torch has one for their device and dtype.

    Why: on CPU torch's default is the per-parameter loop (``foreach`` is the default on CUDA only), which
    launches a dozen small ops for each of ~100 tensors every step; the fused kernel updates each tensor in
    one pass. It computes the same update (to float rounding). Parameters on a device without a fused kernel
    (or of an integer dtype) keep torch's default choice.
    """
    supported = getattr(_foreach_utils, "_get_fused_kernels_supported_devices", lambda: ["cuda", "cpu"])
    devices = set(supported())
    if params and all(p.device.type in devices and p.is_floating_point() for p in params):
        return {"fused": True}
    return {}

"""Quality of fused answers against the reference, side by side with the top-1 candidate's.

BLEU, ROUGE-L (F1) and BERTScore (F1), all ×100, through torchmetrics. Every value exists twice —
``fused_*`` for the fuser's output and ``selected_*`` for the best candidate it was given — and
``gain_*`` is their difference, so each validation log shows what fusion adds.
BERTScore uses an offline encoder by default (``minilm``, all 6 layers); ``None`` turns it off.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torchmetrics.text import BLEUScore, ROUGEScore
from torchmetrics.text.bert import BERTScore
from transformers import AutoConfig

from ..core.offline import resolve_model


class FusionMetrics(nn.Module):
    def __init__(self, bertscore_model: str | None = "minilm", bertscore_layers: int | None = None):
        super().__init__()
        sides = ("fused", "selected")
        self.bleu = nn.ModuleDict({s: BLEUScore(n_gram=4, smooth=True) for s in sides})
        self.rouge = nn.ModuleDict({s: ROUGEScore(rouge_keys=("rougeL",)) for s in sides})
        self.bertscore = None
        if bertscore_model:
            path = resolve_model(bertscore_model)
            if bertscore_layers is None:
                bertscore_layers = AutoConfig.from_pretrained(path).num_hidden_layers
            self.bertscore = nn.ModuleDict({s: BERTScore(model_name_or_path=path, num_layers=bertscore_layers,
                                                         max_length=256, truncation=True, batch_size=32)
                                           for s in sides})

    def update(self, fused: Sequence[str], selected: Sequence[str], references: Sequence[str]) -> None:
        for side, texts in (("fused", fused), ("selected", selected)):
            self.bleu[side].update(list(texts), [[r] for r in references])
            self.rouge[side].update(list(texts), list(references))
            if self.bertscore is not None:
                # BERTScore cannot embed an empty string; a single space scores as (near) nothing.
                self.bertscore[side].update([t or " " for t in texts], [r or " " for r in references])

    def compute(self) -> dict[str, float]:
        out = {}
        for side in ("fused", "selected"):
            out[f"{side}_bleu"] = 100 * float(self.bleu[side].compute())
            out[f"{side}_rougeL"] = 100 * float(self.rouge[side].compute()["rougeL_fmeasure"])
            if self.bertscore is not None:
                out[f"{side}_bertscore"] = 100 * float(torch.as_tensor(self.bertscore[side].compute()["f1"]).mean())
        for name in ("bleu", "rougeL", "bertscore"):
            if f"fused_{name}" in out:
                out[f"gain_{name}"] = out[f"fused_{name}"] - out[f"selected_{name}"]
        return out

    def reset(self) -> None:
        for group in (self.bleu, self.rouge, self.bertscore or {}):
            for metric in group.values():
                metric.reset()

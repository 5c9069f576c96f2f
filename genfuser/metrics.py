"""Quality of fused answers against the reference, side by side with the top-1 candidate's.

BLEU, ROUGE-L (F1) and BERTScore (F1), all ×100, through torchmetrics. Every value exists twice —
``fused_*`` for the fuser's output and ``selected_*`` for the best candidate it was given — and
``gain_*`` is their difference, so each validation log shows what fusion adds.
BERTScore uses an offline encoder by default (``minilm``, all 6 layers); ``None`` turns it off.

Copy-awareness: much of a good fused answer is spans of its inputs. Given the fused candidates,
``copy_max_rougeL`` is the mean over rows of the ROUGE-L F1 between the fused answer and its closest
input, and ``copy_top1_rougeL`` the same against the top-1 input. Near 100: the fuser copies one
input; near the reference's own overlap with the inputs: it copies as much as a good answer does.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.functional.text import rouge_score
from torchmetrics.text import BLEUScore, ROUGEScore
from torchmetrics.text.bert import BERTScore
from transformers import AutoConfig

from ..core.offline import resolve_model


def rouge_l(predictions: Sequence[str], targets: Sequence[str]) -> list[float]:
    """ROUGE-L F1 (x100) of each prediction against its target, as ``FusionMetrics`` computes it."""
    return [100 * float(rouge_score(p, t, rouge_keys="rougeL")["rougeL_fmeasure"])
            for p, t in zip(predictions, targets)]


def copy_overlaps(answer: str, inputs: Sequence[str]) -> tuple[float, float]:
    """(ROUGE-L of ``answer`` against its closest input, against the first input), x100."""
    overlaps = rouge_l([answer] * len(inputs), inputs)
    return max(overlaps), overlaps[0]


def bertscore_metric(model: str = "minilm", layers: int | None = None) -> BERTScore:
    """BERTScore as ``FusionMetrics`` computes it (all layers of ``model`` unless ``layers``)."""
    path = resolve_model(model)
    if layers is None:
        layers = AutoConfig.from_pretrained(path).num_hidden_layers
    return BERTScore(model_name_or_path=path, num_layers=layers, max_length=256, truncation=True, batch_size=32)


def bertscore_f1(metric: BERTScore, predictions: Sequence[str], targets: Sequence[str]) -> list[float]:
    """BERTScore F1 (x100) of each prediction against its target."""
    metric.reset()
    # BERTScore cannot embed an empty string; a single space scores as (near) nothing.
    metric.update([t or " " for t in predictions], [r or " " for r in targets])
    values = [100 * float(f1) for f1 in torch.as_tensor(metric.compute()["f1"]).flatten()]
    metric.reset()
    return values


class FusionMetrics(nn.Module):
    def __init__(self, bertscore_model: str | None = "minilm", bertscore_layers: int | None = None):
        super().__init__()
        sides = ("fused", "selected")
        self.bleu = nn.ModuleDict({s: BLEUScore(n_gram=4, smooth=True) for s in sides})
        self.rouge = nn.ModuleDict({s: ROUGEScore(rouge_keys=("rougeL",)) for s in sides})
        self.copy = nn.ModuleDict({name: MeanMetric() for name in ("max", "top1")})
        self.bertscore = None
        if bertscore_model:
            self.bertscore = nn.ModuleDict({s: bertscore_metric(bertscore_model, bertscore_layers) for s in sides})

    def update(self, fused: Sequence[str], selected: Sequence[str], references: Sequence[str],
               candidates: Sequence[Sequence[str]] | None = None) -> None:
        """``candidates``: each row's fused inputs, best first (for the copy metrics)."""
        if candidates is not None:
            for text, inputs in zip(fused, candidates):
                closest, top1 = copy_overlaps(text, inputs)
                self.copy["max"].update(closest)
                self.copy["top1"].update(top1)
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
        if self.copy["max"].update_count:
            out["copy_max_rougeL"] = float(self.copy["max"].compute())
            out["copy_top1_rougeL"] = float(self.copy["top1"].compute())
        return out

    def reset(self) -> None:
        for group in (self.bleu, self.rouge, self.copy, self.bertscore or {}):
            for metric in group.values():
                metric.reset()

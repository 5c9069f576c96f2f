"""GenFuserModule: trains a causal or seq2seq fuser with Lightning (teacher-forced cross-entropy on the answer).

What every component shares (checkpoints, LoRA, export, the optimizer) lives in
:class:`blendkit.training.module.BlendkitModule`; this file holds what is particular to fusion.
Validation generates a fused answer for each row and scores it, and the top-1 candidate it was
given, against the reference (``FusionMetrics``), so every validation log shows the gain of fusion.
The export holds the fuser's formatting settings (``blendkit_fuser.json``) beside the weights.
Causal or seq2seq is the backbone's own property (``is_causal``): it picks the formatter (whose
``collate`` gives the model's keyword inputs, and ``generate`` the answers) and the LoRA task type.
"""

from __future__ import annotations

import torch

from ..core.offline import resolve_model
from ..training.module import BlendkitModule
from .config import SETTINGS_FILE, FuserSettings
from .formatting import formatter_for
from .metrics import FusionMetrics
from .model import build_fuser, fuser_from_config, is_causal, load_fuser

NOT_MODEL_INPUTS = ("rows", "sources")   # what a validation batch carries besides the model's inputs


class GenFuserModule(BlendkitModule):
    """
    Args:
        backbone: a causal LM (Llama/Qwen/SmolLM2... id, path or packaged alias; ``smollm2`` is the
            offline default of the recipes), a seq2seq model (T5/BART) or an encoder (BERT/MiniLM, made bert2bert).
        top_k, source_max_length, candidate_max_length, target_max_length: see :class:`FuserSettings`
            (the defaults are its defaults).
        dropout: override the backbone's dropout (None keeps it; 0 is much faster on CPU).
        generate_kwargs: options for validation generation (``num_beams``, ``max_new_tokens``, ...; greedy
            by default).
        bertscore_model: encoder for validation BERTScore (None turns BERTScore off).
        Everything else (init_from, LoRA, export_dir, ...): see :class:`blendkit.training.module.BlendkitModule`.
    """

    kind = "genfuser"
    card_purpose = ("Fuses the top-K ranked candidate answers to an instruction into one answer (a GenFuser, as in "
                    "LLM-Blender).")
    card_usage = ("from blendkit.genfuser import Fuser\n\nfuser = Fuser.from_pretrained(\"{path}\")\n"
                  "fuser.fuse([\"Name a prime.\"], [[\"7 is prime.\", \"2 is the only even prime.\"]])[0].fused")
    settings_file = SETTINGS_FILE
    lora_task_type = "SEQ_2_SEQ_LM"
    progress_metrics = ("fused_rougeL", "gain_rougeL")

    def __init__(
        self,
        top_k: int = FuserSettings.top_k,
        source_max_length: int = FuserSettings.source_max_length,
        candidate_max_length: int = FuserSettings.candidate_max_length,
        target_max_length: int = FuserSettings.target_max_length,
        dropout: float | None = None,
        learning_rate: float = 1e-4,
        warmup_ratio: float = 0.05,
        generate_kwargs: dict | None = None,
        bertscore_model: str | None = "minilm",
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, warmup_ratio=warmup_ratio, **kwargs)
        self.fuser_settings = FuserSettings(top_k, source_max_length, candidate_max_length, target_max_length)
        self.formatter = None
        self.generate_kwargs = {"max_new_tokens": target_max_length, "num_beams": 1, "do_sample": False,
                                **(generate_kwargs or {})}
        self.init_model()

    def build_model(self):
        return build_fuser(resolve_model(self.hparams.backbone), max_candidates=self.hparams.top_k,
                           dropout=self.hparams.dropout)

    def load_model(self, path: str):
        return load_fuser(path)

    def model_from_config(self, config: dict):
        return fuser_from_config(config)

    def prepare_model(self, model) -> None:
        self.lora_task_type = "CAUSAL_LM" if is_causal(model.config) else "SEQ_2_SEQ_LM"

    def on_tokenizer(self) -> None:
        self.formatter = formatter_for(self.model, self.tokenizer, **self.fuser_settings.to_dict())

    def settings(self) -> dict:
        """Formatting settings saved with the model, so ``Fuser.from_pretrained`` formats inputs the same way."""
        return self.fuser_settings.to_dict()

    # ------------------------------------------------------------------------------------------ #
    def setup(self, stage: str) -> None:
        if self.val_metrics is None and stage in ("fit", "validate"):
            self.val_metrics = FusionMetrics(self.hparams.bertscore_model)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.model(**batch).loss
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch["input_ids"]))
        return loss

    def generate(self, sources: list[list[int]], **overrides) -> list[str]:
        """Fused answers to encoded sources (``formatter.encode_sources``)."""
        return self.formatter.generate(self.model, sources, **{**self.generate_kwargs, **overrides})

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        rows = batch["rows"]
        loss = self.model(**{name: value for name, value in batch.items() if name not in NOT_MODEL_INPUTS}).loss
        self.log("val_loss", loss, prog_bar=True, batch_size=len(rows))
        fused = self.generate(batch["sources"])
        self.val_metrics.update(fused, [texts[0] for texts in rows.candidates], rows.references,
                                candidates=rows.candidates)

"""GenFuserModule: trains a seq2seq fuser with Lightning (teacher-forced cross-entropy).

Validation generates a fused answer for each row and scores it, and the top-1 candidate it was
given, against the reference (``FusionMetrics``), so every validation log shows the gain of fusion.
The trained artefact is ``self.model``, a plain `transformers` seq2seq model; ``export()`` writes it
with its tokenizer and the fuser's formatting settings (``blendkit_fuser.json``).
"""

from __future__ import annotations

import json

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info, rank_zero_only

from ..export import KIND_KEY, TOKENIZER_KEY
from ..offline import resolve_model
from ..training import (adamw_with_warmup, base_model, export_model, tokenizer_files, tokenizer_from_files,
                        wrap_lora)
from .formatting import FuserFormatter
from .metrics import FusionMetrics
from .model import build_fuser, fuser_from_config, load_fuser

from .inference import SETTINGS_FILE


class GenFuserModule(pl.LightningModule):
    """
    Args:
        backbone: seq2seq model (T5/BART id or path) or encoder (BERT/MiniLM, made bert2bert);
            ``minilm`` is the offline default.
        init_from: a saved fuser folder to continue training instead (overrides backbone).
        top_k: candidates fused per row (LLM-Blender uses 3).
        source_max_length / candidate_max_length / target_max_length: token budgets of the
            instruction, of each candidate, and of the generated answer.
        dropout: override the backbone's dropout (None keeps it; 0 is much faster on CPU).
        learning_rate, weight_decay, warmup_ratio: AdamW with linear warm-up and decay.
        lora_r > 0: train LoRA adapters (peft) instead of all weights.
        gradient_checkpointing: trade compute for memory.
        generate_kwargs: options for validation generation (``num_beams``, ``max_new_tokens``, ...).
        bertscore_model: encoder for validation BERTScore (None turns BERTScore off).
        export_dir: write the trained fuser there (safetensors + tokenizer) at the end of fit.
        model_config: set by checkpoints (the built architecture); leave it unset.
    """

    def __init__(
        self,
        backbone: str = "minilm",
        init_from: str | None = None,
        top_k: int = 3,
        source_max_length: int = 96,
        candidate_max_length: int = 128,
        target_max_length: int = 128,
        dropout: float | None = None,
        learning_rate: float = 1e-4,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.05,
        lora_r: int = 0,
        lora_alpha: int = 16,
        lora_dropout: float = 0.05,
        lora_target_modules: list[str] | None = None,
        gradient_checkpointing: bool = False,
        generate_kwargs: dict | None = None,
        bertscore_model: str | None = "minilm",
        export_dir: str | None = None,
        model_config: dict | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.tokenizer = None
        if model_config:
            # Loading a checkpoint: architecture and tokenizer come from the checkpoint (on_load_checkpoint).
            self.model = fuser_from_config(model_config)
        elif init_from:
            self.model, self.tokenizer = load_fuser(init_from)
        else:
            self.model, self.tokenizer = build_fuser(resolve_model(backbone), max_candidates=top_k, dropout=dropout)
        self.model.train()  # from_pretrained returns eval mode; Lightning would train with dropout off
        self.formatter = self._formatter() if self.tokenizer is not None else None
        if gradient_checkpointing:
            self.model.activation_checkpointing_enable()
        if lora_r > 0:
            self.model = wrap_lora(self.model, lora_r, lora_alpha, lora_dropout, lora_target_modules,
                                   task_type="SEQ_2_SEQ_LM")
        self.generate_kwargs = {"max_new_tokens": target_max_length, "num_beams": 1, **(generate_kwargs or {})}
        self.val_metrics: FusionMetrics | None = None

    def _formatter(self) -> FuserFormatter:
        h = self.hparams
        positions = getattr(base_model(self.model).get_encoder().config, "max_position_embeddings", None)
        return FuserFormatter(self.tokenizer, h.top_k, h.source_max_length, h.candidate_max_length,
                              h.target_max_length, max_positions=positions)

    def setup(self, stage: str) -> None:
        if self.val_metrics is None and stage in ("fit", "validate"):
            self.val_metrics = FusionMetrics(self.hparams.bertscore_model)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          labels=batch["labels"]).loss
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch["input_ids"]))
        return loss

    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **overrides) -> list[str]:
        output = self.model.generate(input_ids=input_ids, attention_mask=attention_mask,
                                     **{**self.generate_kwargs, **overrides})
        return self.tokenizer.batch_decode(output, skip_special_tokens=True)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        rows = batch["rows"]
        loss = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          labels=batch["labels"]).loss
        self.log("val_loss", loss, prog_bar=True, batch_size=len(rows))
        fused = self.generate(batch["input_ids"], batch["attention_mask"])
        self.val_metrics.update(fused, [texts[0] for texts in rows.candidates], rows.references)

    def on_validation_epoch_end(self) -> None:
        values = self.val_metrics.compute()
        for name, value in values.items():
            self.log(f"val_{name}", value, prog_bar=name in ("fused_rougeL", "gain_rougeL"))
        rank_zero_info("[blendkit] fuser validation: " + ", ".join(f"{k}={v:.2f}" for k, v in values.items()))
        self.val_metrics.reset()

    def configure_optimizers(self):
        params = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        return adamw_with_warmup([{"params": params, "lr": self.hparams.learning_rate}], self.hparams.weight_decay,
                                 self.hparams.warmup_ratio, self.trainer.estimated_stepping_batches)

    # ------------------------------------------------------------------------------------------ #
    def settings(self) -> dict:
        """Formatting settings saved with the model, so ``Fuser.from_pretrained`` formats inputs the same way."""
        f = self.formatter
        return {"top_k": f.top_k, "source_max_length": f.source_max_length,
                "candidate_max_length": f.candidate_max_length, "target_max_length": f.target_max_length}

    @rank_zero_only
    def export(self, directory: str, merge_lora: bool = True) -> str:
        return export_model(self.model, self.tokenizer, directory, merge_lora, what="fuser",
                            extra_files={SETTINGS_FILE: json.dumps(self.settings(), indent=2)})

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[KIND_KEY] = "genfuser"
        checkpoint["hyper_parameters"]["model_config"] = base_model(self.model).config.to_dict()
        checkpoint[TOKENIZER_KEY] = tokenizer_files(self.tokenizer)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self.tokenizer is None:
            self.tokenizer = tokenizer_from_files(checkpoint[TOKENIZER_KEY])
            self.formatter = self._formatter()

    def on_fit_end(self) -> None:
        if self.hparams.export_dir:
            self.export(self.hparams.export_dir)


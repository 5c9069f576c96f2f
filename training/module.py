"""BlendkitModule: what every blendkit LightningModule shares. A component fills in only what differs.

The module wraps a plain `transformers` model (``self.model``) and its tokenizer; it trains the
model and is never part of the artefact. Written once here:

- where the model comes from: a checkpoint's recorded architecture (``model_config``, set by
  ``on_save_checkpoint``), a saved folder (``init_from``) or a pretrained ``backbone``;
- LoRA (peft) and gradient checkpointing, the AdamW schedule, validation logging;
- self-contained checkpoints (component kind, architecture and tokenizer files inside);
- export: the one model folder of ``training/folder.py``, also at the end of ``fit``.

A component sets ``kind``, the model-card texts and ``progress_metrics``, and implements
``build_model`` / ``load_model`` / ``model_from_config`` (and, where it needs them, ``prepare_model``,
``on_tokenizer``, ``param_groups``, ``settings``).
"""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_info, rank_zero_only
from torch import nn

from .checkpoint import KIND_KEY, TOKENIZER_KEY, tokenizer_files, tokenizer_from_files
from .folder import save_model_folder
from .lora import base_model, wrap_lora
from .optim import adamw_with_warmup


class BlendkitModule(pl.LightningModule):
    """
    Args (shared by every component; each also takes its own):
        backbone: model to start from (Hub id, local path, or a packaged alias such as ``minilm``).
        init_from: a saved model folder to continue training instead (overrides ``backbone``).
        learning_rate, weight_decay, warmup_ratio: AdamW with linear warm-up, then linear decay to 0.
        lora_r: > 0 trains LoRA adapters (peft) on ``lora_target_modules`` (default: the attention
            query/value projections) instead of all weights.
        gradient_checkpointing: trade compute for memory on long inputs.
        export_dir: if set, the trained model is exported there at the end of fit.
        model_config: set by checkpoints (the built architecture); leave it unset.
    """

    kind: str = ""                      # "pairranker", "genfuser": recorded in checkpoints and model cards
    card_purpose: str = ""              # model card: what the model does
    card_usage: str = ""                # model card: a Python snippet; "{path}" is the folder or repo id
    settings_file: str | None = None    # extra JSON settings saved beside the weights (see ``settings``)
    lora_task_type: str | None = None
    lora_modules_to_save: list[str] | None = None
    progress_metrics: tuple[str, ...] = ()   # validation metrics shown in the progress bar

    def __init__(
        self,
        backbone: str = "minilm",
        init_from: str | None = None,
        learning_rate: float = 3e-5,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        lora_r: int = 0,
        lora_alpha: int = 16,
        lora_dropout: float = 0.05,
        lora_target_modules: list[str] | None = None,
        gradient_checkpointing: bool = False,
        export_dir: str | None = None,
        model_config: dict | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()   # the component's own arguments are collected too
        self.model: nn.Module | None = None
        self.tokenizer = None
        self.val_metrics = None

    # -- what a component fills in -------------------------------------------------------------- #
    def build_model(self) -> tuple[nn.Module, object]:
        """A new (model, tokenizer) from ``hparams.backbone``."""
        raise NotImplementedError

    def load_model(self, path: str) -> tuple[nn.Module, object]:
        """(model, tokenizer) from a saved folder."""
        raise NotImplementedError

    def model_from_config(self, config: dict) -> nn.Module:
        """An untrained model of a recorded architecture (a checkpoint's weights follow)."""
        raise NotImplementedError

    def prepare_model(self, model: nn.Module) -> None:
        """Changes to the bare model before LoRA wraps it (e.g. freezing layers)."""

    def on_tokenizer(self) -> None:
        """Called once ``self.tokenizer`` is known (at init, or when a checkpoint provides it)."""

    def param_groups(self) -> list[dict]:
        """Optimizer groups ``{"params": [(name, param), ...], "lr": ...}``; by default one group."""
        params = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        return [{"params": params, "lr": self.hparams.learning_rate}]

    def settings(self) -> dict | None:
        """Settings saved as ``settings_file`` beside the weights, for the inference API to read."""
        return None

    # -- shared ----------------------------------------------------------------------------------- #
    def init_model(self) -> None:
        """Build ``self.model`` / ``self.tokenizer``; a component calls this at the end of its ``__init__``."""
        h = self.hparams
        if h.model_config:
            # Loading a checkpoint: the architecture and the tokenizer come from the checkpoint itself,
            # so neither the backbone nor init_from needs to exist any more (see on_load_checkpoint).
            self.model = self.model_from_config(h.model_config)
        elif h.init_from:
            self.model, self.tokenizer = self.load_model(h.init_from)
        else:
            self.model, self.tokenizer = self.build_model()
        self.model.train()   # from_pretrained returns eval mode; Lightning keeps a submodule's mode
        if h.gradient_checkpointing:
            self.model.activation_checkpointing_enable()
        self.prepare_model(self.model)
        if h.lora_r > 0:
            self.model = wrap_lora(self.model, h.lora_r, h.lora_alpha, h.lora_dropout, h.lora_target_modules,
                                   modules_to_save=self.lora_modules_to_save, task_type=self.lora_task_type)
        if self.tokenizer is not None:
            self.on_tokenizer()

    def on_validation_epoch_end(self) -> None:
        values = self.val_metrics.compute()
        # The metric objects already reduced across processes: log the values as they are.
        for name, value in values.items():
            self.log(f"val_{name}", value, prog_bar=name in self.progress_metrics)
        rank_zero_info(f"[blendkit] {self.kind} validation: "
                       + ", ".join(f"{k}={float(v):.3f}" for k, v in values.items()))
        self.val_metrics.reset()

    def configure_optimizers(self):
        return adamw_with_warmup(self.param_groups(), self.hparams.weight_decay, self.hparams.warmup_ratio,
                                 self.trainer.estimated_stepping_batches)

    @rank_zero_only
    def export(self, directory: str, merge_lora: bool = True, card: dict | None = None) -> str:
        """Write the model folder (safetensors, config, tokenizer, settings, model card) to ``directory``.
        With LoRA and ``merge_lora=False`` only the adapter (and ``lora_modules_to_save``) is saved."""
        return save_model_folder(self.model, self.tokenizer, directory, kind=self.kind, purpose=self.card_purpose,
                                 usage=self.card_usage, merge_lora=merge_lora, settings_file=self.settings_file,
                                 settings=self.settings(), card=card)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[KIND_KEY] = self.kind
        checkpoint["hyper_parameters"]["model_config"] = base_model(self.model).config.to_dict()
        checkpoint[TOKENIZER_KEY] = tokenizer_files(self.tokenizer)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self.tokenizer is None:
            self.tokenizer = tokenizer_from_files(checkpoint[TOKENIZER_KEY])
            self.on_tokenizer()

    def on_fit_end(self) -> None:
        if self.hparams.export_dir:
            self.export(self.hparams.export_dir)

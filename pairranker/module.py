"""PairRankerModule: trains a PairRankerModel with Lightning. It wraps the model; it is not the model.

The trained artefact is ``self.model`` (a plain `transformers` model) plus ``self.tokenizer``;
``export()`` writes both as a Hub-style folder (safetensors) that ``Ranker.from_pretrained`` or
``PairRankerModel.from_pretrained`` loads without any Lightning code.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info, rank_zero_only
from torch import nn
from torchmetrics.classification import BinaryAccuracy
from transformers import AutoTokenizer

from ..export import KIND_KEY, TOKENIZER_KEY
from ..offline import resolve_model
from ..training import (adamw_with_warmup, base_model, export_model, tokenizer_files, tokenizer_from_files,
                        wrap_lora)
from .aggregation import AGGREGATIONS
from .datamodule import RankedRows
from .encoding import PairEncoder
from .inference import Ranker
from .metrics import RankingMetrics
from .config import PairRankerConfig
from .model import PairRankerModel


class PairRankerModule(pl.LightningModule):
    """
    Args:
        backbone: encoder to start from (Hub id, local path, or the offline alias ``minilm``).
        init_from: a saved PairRankerModel folder to continue training instead (overrides backbone).
        source_max_length, candidate_max_length, head_hidden_size, head_dropout, use_length_features:
            see :class:`PairRankerConfig`.
        model_config: set by checkpoints (the built architecture); leave it unset.
        encoder_dropout: override the backbone's dropout (None keeps it; 0 is ~3x faster on CPU).
        learning_rate / head_learning_rate: AdamW learning rates of the encoder and the new head.
        warmup_ratio: share of steps with linear warm-up; then linear decay to 0.
        freeze_layers: keep the embeddings and the lowest N encoder layers fixed (faster on CPU).
        lora_r: > 0 trains LoRA adapters (peft) on ``lora_target_modules`` instead of the full
            encoder; the scoring head is always fully trained and saved (``modules_to_save``).
        gradient_checkpointing: trade compute for memory on long inputs.
        val_aggregation: how validation rows are ranked (``max_logits``, ``max_wins``, ``knockout``).
        eval_batch_size: pair sequences per forward pass during validation.
        export_dir: if set, the trained model is exported there (safetensors + tokenizer) at the end of fit.
    """

    def __init__(
        self,
        backbone: str = "minilm",
        init_from: str | None = None,
        source_max_length: int = 128,
        candidate_max_length: int = 184,
        head_hidden_size: int = 256,
        head_dropout: float = 0.1,
        use_length_features: bool = True,
        encoder_dropout: float | None = None,
        learning_rate: float = 3e-5,
        head_learning_rate: float = 1e-3,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        freeze_layers: int = 0,
        lora_r: int = 0,
        lora_alpha: int = 16,
        lora_dropout: float = 0.05,
        lora_target_modules: list[str] | None = None,
        gradient_checkpointing: bool = False,
        val_aggregation: str = "max_logits",
        eval_batch_size: int = 64,
        export_dir: str | None = None,
        model_config: dict | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        if val_aggregation not in AGGREGATIONS:
            raise ValueError(f"model.val_aggregation must be one of {AGGREGATIONS}, got {val_aggregation!r}")
        self.tokenizer = None
        if model_config:
            # Loading a checkpoint: the architecture and tokenizer come from the checkpoint itself,
            # so neither the backbone nor init_from needs to exist any more (see on_load_checkpoint).
            self.model = PairRankerModel(PairRankerConfig.from_dict(model_config))
        elif init_from:
            self.model = PairRankerModel.from_pretrained(init_from)
            self.tokenizer = AutoTokenizer.from_pretrained(init_from)
        else:
            self.model, self.tokenizer = PairRankerModel.from_backbone(
                resolve_model(backbone), source_max_length=source_max_length,
                candidate_max_length=candidate_max_length, head_hidden_size=head_hidden_size,
                head_dropout=head_dropout, use_length_features=use_length_features, encoder_dropout=encoder_dropout)
        self.pair_encoder = PairEncoder(self.tokenizer, self.model.config) if self.tokenizer is not None else None
        if gradient_checkpointing:
            self.model.activation_checkpointing_enable()
        if freeze_layers:
            _freeze_bottom(self.model.encoder, freeze_layers)
        if lora_r > 0:
            self.model = wrap_lora(self.model, lora_r, lora_alpha, lora_dropout, lora_target_modules,
                                   modules_to_save=["head"])
        self.train_pair_acc = BinaryAccuracy()
        self.val_metrics: RankingMetrics | None = None

    # ------------------------------------------------------------------------------------------ #
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        keys = getattr(datamodule, "score_keys", ("judge",))
        self.val_metrics = RankingMetrics(keys, full_order=self.hparams.val_aggregation != "knockout")

    def forward(self, **batch) -> torch.Tensor:
        return self.model(**batch).logits

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        out = self.model(**batch)
        labels = batch["labels"]
        decided = labels != 0.5
        if decided.any():
            self.train_pair_acc(out.logits.detach()[decided].sigmoid(), labels[decided].long())
        self.log("train_loss", out.loss, prog_bar=True, batch_size=len(labels))
        self.log("train_pair_acc", self.train_pair_acc, prog_bar=True, on_step=False, on_epoch=True,
                 batch_size=len(labels))
        return out.loss

    def validation_step(self, batch: RankedRows, batch_idx: int) -> None:
        ranker = Ranker(self.model, self.tokenizer, batch_size=self.hparams.eval_batch_size)
        results = ranker.rank_encoded(batch.rows, self.hparams.val_aggregation, ids=batch.ids, return_matrix=True)
        for result, target, raw in zip(results, batch.targets, batch.raw):
            matrix = torch.tensor(result.matrix) if result.matrix is not None else None
            self.val_metrics.update(torch.tensor(result.scores), torch.from_numpy(target),
                                    torch.from_numpy(raw), matrix)

    def on_validation_epoch_end(self) -> None:
        values = self.val_metrics.compute()
        # The metric object already reduced across processes: log the values as they are.
        for name, value in values.items():
            self.log(f"val_{name}", value, prog_bar=name in ("top1", "pair_acc"))
        rank_zero_info(f"[blendkit] validation on {int(values['rows'])} rows: "
                       + ", ".join(f"{k}={float(v):.3f}" for k, v in values.items()))
        self.val_metrics.reset()

    def configure_optimizers(self):
        head_params, encoder_params = [], []
        for name, param in self.model.named_parameters():
            if param.requires_grad:
                (head_params if ".head." in f".{name}" else encoder_params).append((name, param))
        return adamw_with_warmup([{"params": encoder_params, "lr": self.hparams.learning_rate},
                                  {"params": head_params, "lr": self.hparams.head_learning_rate}],
                                 self.hparams.weight_decay, self.hparams.warmup_ratio,
                                 self.trainer.estimated_stepping_batches)

    # ------------------------------------------------------------------------------------------ #
    @rank_zero_only
    def export(self, directory: str, merge_lora: bool = True) -> str:
        """Write safetensors weights, config and tokenizer to ``directory`` (atomically replaced).
        With LoRA and ``merge_lora=False`` only the adapter (and the head) is saved."""
        return export_model(self.model, self.tokenizer, directory, merge_lora, what="ranker")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[KIND_KEY] = "pairranker"
        checkpoint["hyper_parameters"]["model_config"] = base_model(self.model).config.to_dict()
        checkpoint[TOKENIZER_KEY] = tokenizer_files(self.tokenizer)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self.tokenizer is None:
            self.tokenizer = tokenizer_from_files(checkpoint[TOKENIZER_KEY])
            self.pair_encoder = PairEncoder(self.tokenizer, base_model(self.model).config)

    def on_fit_end(self) -> None:
        if self.hparams.export_dir:
            self.export(self.hparams.export_dir)


def _freeze_bottom(encoder: nn.Module, num_layers: int) -> None:
    """Freeze the embeddings and the first ``num_layers`` transformer blocks of an encoder."""
    for param in encoder.get_input_embeddings().parameters():
        param.requires_grad_(False)
    embeddings = getattr(encoder, "embeddings", None)
    if embeddings is not None:
        for param in embeddings.parameters():
            param.requires_grad_(False)
    blocks = next((m for name, m in encoder.named_modules()
                   if isinstance(m, nn.ModuleList) and name.split(".")[-1] in ("layer", "layers")), None)
    if blocks is None:
        raise ValueError("model.freeze_layers: cannot find the encoder's list of layers to freeze.")
    if num_layers > len(blocks):
        raise ValueError(f"model.freeze_layers={num_layers} but the encoder has only {len(blocks)} layers.")
    for block in list(blocks)[:num_layers]:
        for param in block.parameters():
            param.requires_grad_(False)



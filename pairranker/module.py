"""PairRankerModule: trains a PairRankerModel with Lightning. It wraps the model; it is not the model.

What every component shares (checkpoints, LoRA, export, the optimizer) lives in
:class:`blendkit.training.module.BlendkitModule`; this file holds what is particular to ranking:
the model builders, the frozen bottom layers, the separate head learning rate, LoRA by default on
decoder-only backbones, the model prior's list of source models (read from the training data),
pairwise training and row-wise validation. ``export()`` writes a folder that ``Ranker.from_pretrained`` or
``PairRankerModel.from_pretrained`` loads without any Lightning code.
"""

from __future__ import annotations

import torch
from pytorch_lightning.utilities import rank_zero_info
from torch import nn
from torchmetrics.classification import BinaryAccuracy
from transformers import AutoTokenizer

from ..core.errors import ConfigError
from ..core.offline import resolve_model
from ..training.lora import base_model
from ..training.module import BlendkitModule
from .aggregation import AGGREGATIONS
from .config import PairRankerConfig, is_decoder_only
from .datamodule import RankedRows
from .encoding import PairEncoder, length_feature
from .inference import Ranker
from .metrics import RankingMetrics
from .model import PairRankerModel
from .prior_fit import fitted_prior, fitted_rule

PRIOR_INITS = ("bradley_terry", "rule", "zeros")

# LoRA rank used when ``lora_r`` is left unset and the backbone is a decoder-only LM.
DECODER_LORA_R = 16


class PairRankerModule(BlendkitModule):
    """
    Args:
        source_max_length, candidate_max_length, head_hidden_size, head_dropout, use_length_features,
        pooling: see :class:`PairRankerConfig` (the defaults are its defaults).
        use_model_prior: learn a score offset per source model (off: the ranker reads text only).
        model_names: the models the prior knows; None (the default) takes the training data's models
            when fit starts. Models not listed get offset 0.
        prior_init: where a new prior's offsets start: ``bradley_terry`` (the default: the source models'
            Bradley–Terry strengths on the training rows, see ``prior_fit.py``), ``rule`` (the ranker starts
            as the "which model, how long" rule: strengths and a length weight fitted together on the
            training rows, held by a length-aware prior (``prior_length``), and the text head's output at 0,
            so the text part only adds what it learns; needs ``use_length_features``) or ``zeros``.
        lora_r: LoRA rank (see below); None (the default) means LoRA r=16 on a decoder-only backbone
            (SmolLM2, Gemma 3, any causal LM) and full fine-tuning of an encoder. 0 turns LoRA off.
        encoder_dropout: override the backbone's dropout (None keeps it; 0 is ~3x faster on CPU).
        head_learning_rate: AdamW learning rate of the new scoring head (``learning_rate``: the encoder's).
        freeze_layers: keep the embeddings and the lowest N encoder layers fixed (faster on CPU).
        val_aggregation: how validation rows are ranked (``max_logits``, ``max_wins``, ``knockout``).
        eval_batch_size: pair sequences per forward pass during validation.
        Everything else (backbone, init_from, LoRA, export_dir, ...): see
        :class:`blendkit.training.module.BlendkitModule`. With LoRA the scoring head and the model
        prior are always fully trained and saved (``modules_to_save``). ``init_from`` keeps the saved
        ranker's architecture (pooling, prior and its model names).
    """

    kind = "pairranker"
    card_purpose = ("Ranks candidate answers to an instruction by pairwise comparison (a PairRanker cross-encoder, "
                    "as in LLM-Blender): pick the best of N LLM outputs, or rank them before fusion.")
    card_usage = ("from blendkit.pairranker import Ranker\n\nranker = Ranker.from_pretrained(\"{path}\")\n"
                  "result = ranker.rank(\"Name a prime.\", [\"7\", \"9\", \"2 is the only even prime.\"])[0]\n"
                  "print(result.ranks, result.scores)          # 1 = best\n"
                  "ranker.compare(\"Name a prime.\", \"7\", \"9\")   # P(first answer is better)")
    progress_metrics = ("judge_rank", "pair_acc")

    def __init__(
        self,
        source_max_length: int = PairRankerConfig.source_max_length,
        candidate_max_length: int = PairRankerConfig.candidate_max_length,
        head_hidden_size: int = PairRankerConfig.head_hidden_size,
        head_dropout: float = PairRankerConfig.head_dropout,
        use_length_features: bool = PairRankerConfig.use_length_features,
        pooling: str | None = PairRankerConfig.pooling,
        use_model_prior: bool = PairRankerConfig.use_model_prior,
        model_names: list[str] | None = None,
        prior_init: str = "bradley_terry",
        encoder_dropout: float | None = None,
        learning_rate: float = 3e-5,
        head_learning_rate: float = 1e-3,
        freeze_layers: int = 0,
        val_aggregation: str = "max_logits",
        eval_batch_size: int = 64,
        lora_r: int | None = None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, lora_r=lora_r, **kwargs)
        if val_aggregation not in AGGREGATIONS:
            raise ValueError(f"model.val_aggregation must be one of {AGGREGATIONS}, got {val_aggregation!r}")
        if prior_init not in PRIOR_INITS:
            raise ValueError(f"model.prior_init must be one of {PRIOR_INITS}, got {prior_init!r}")
        if use_model_prior and prior_init == "rule" and not use_length_features:
            raise ConfigError("model.prior_init: rule starts the ranker as a model-and-length rule; it needs "
                              "model.use_length_features: true.")
        self.pair_encoder: PairEncoder | None = None
        self.train_pair_acc = BinaryAccuracy()
        self.init_model()

    def build_model(self):
        h = self.hparams
        return PairRankerModel.from_backbone(
            resolve_model(h.backbone), source_max_length=h.source_max_length,
            candidate_max_length=h.candidate_max_length, head_hidden_size=h.head_hidden_size,
            head_dropout=h.head_dropout, use_length_features=h.use_length_features, pooling=h.pooling,
            use_model_prior=h.use_model_prior, model_names=h.model_names, encoder_dropout=h.encoder_dropout,
            prior_length=h.use_model_prior and h.prior_init == "rule")

    def load_model(self, path: str):
        return PairRankerModel.from_pretrained(path), AutoTokenizer.from_pretrained(path)

    def model_from_config(self, config: dict) -> PairRankerModel:
        return PairRankerModel(PairRankerConfig.from_dict(config))

    def prepare_model(self, model: PairRankerModel) -> None:
        if self.hparams.lora_r is None:   # decided here, once the backbone is known; checkpoints record it
            self.hparams.lora_r = DECODER_LORA_R if is_decoder_only(model.config.encoder) else 0
        if self.hparams.freeze_layers:
            _freeze_bottom(model.encoder, self.hparams.freeze_layers)

    @property
    def lora_modules_to_save(self) -> list[str]:
        # New modules train in full under LoRA, and an adapter-only export carries them.
        return ["head", "model_prior"] if base_model(self.model).config.use_model_prior else ["head"]

    def on_tokenizer(self) -> None:
        self.pair_encoder = PairEncoder(self.tokenizer, base_model(self.model).config)

    def param_groups(self) -> list[dict]:
        head_params, encoder_params = [], []
        for name, param in self.model.named_parameters():
            if param.requires_grad:
                new = ".head." in f".{name}" or ".model_prior." in f".{name}"
                (head_params if new else encoder_params).append((name, param))
        return [{"params": encoder_params, "lr": self.hparams.learning_rate},
                {"params": head_params, "lr": self.hparams.head_learning_rate}]

    # ------------------------------------------------------------------------------------------ #
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if stage == "fit":
            self._name_prior_models(datamodule)
        keys = getattr(datamodule, "score_keys", ("judge",))
        self.val_metrics = RankingMetrics(keys, full_order=self.hparams.val_aggregation != "knockout")

    def _name_prior_models(self, datamodule) -> None:
        """A new model prior learns the training data's source models, known only once the data is loaded
        (``setup`` runs before the optimizer is built and before a checkpoint's weights are restored)."""
        model = base_model(self.model)
        if not model.config.use_model_prior or model.config.model_names:
            return
        names = list(getattr(datamodule, "model_names", None) or [])
        if not names:
            raise ConfigError("model.use_model_prior is true, but the training data names no source models to "
                              "learn offsets for; set model.model_names, or model.use_model_prior: false.")
        message = f"[blendkit] model prior over {len(names)} source models of the training data"
        offsets, length_weight = None, None
        rows, tie_eps = datamodule.train_data.rows, getattr(datamodule.hparams, "tie_eps", 1e-6)
        if self.hparams.prior_init == "bradley_terry":
            offsets = fitted_prior(datamodule.train_data.targets, [row.models for row in rows], names, tie_eps)
            message += f", starting from their Bradley–Terry strengths ({offsets.min():+.2f} … {offsets.max():+.2f})"
        elif self.hparams.prior_init == "rule":
            lengths = [[length_feature(c.full_length) for c in row.candidates] for row in rows]
            offsets, length_weight = fitted_rule(datamodule.train_data.targets, [row.models for row in rows],
                                                 lengths, names, tie_eps)
            message += (f", starting as the model-and-length rule fitted on them (strengths {offsets.min():+.2f} … "
                        f"{offsets.max():+.2f}, length weight {length_weight:+.2f}; text head at 0)")
        model.set_model_names(names, offsets, length_weight)
        if self.hparams.prior_init == "rule":
            model.start_as_prior()
        rank_zero_info(message)
        if self.tokenizer is not None:
            self.on_tokenizer()   # the pair encoder maps names to the new offsets

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        saved = ((checkpoint.get("hyper_parameters") or {}).get("model_config") or {}).get("model_names") or []
        current = base_model(self.model).config.model_names
        if base_model(self.model).config.use_model_prior and saved != current:
            raise ConfigError(f"model.model_names: the checkpoint's model prior knows {saved}, but this run's "
                              f"prior was given {current} (from the training data); resume on the same data, or "
                              f"set model.model_names to the checkpoint's list.")

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

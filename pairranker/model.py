"""PairRankerModel: a cross-encoder that reads (instruction, A, B) and says which answer is better.

One encoder pass over ``[CLS] <source> S [SEP] <candidate_a> A [SEP] <candidate_b> B [SEP]`` lets
every token of A attend to every token of B and of the instruction. The hidden states of each part
are pooled (S, A, B); a shared scoring MLP reads (S, X, S*X [, length of X]) and gives each
candidate a score *in the context of the other*. The comparison logit is score(A) - score(B), so
the head itself is antisymmetric; position bias can only come from the encoder, and inference
cancels it by averaging both orders.

A decoder-only backbone (SmolLM2, Gemma 3, any causal LM) reads the same sequence causally: A never
sees B, and only a part's last token has read all of it, so its parts are pooled at their last
token (``pooling="last"``); averaging both orders then lets each answer be read after the other.

With ``use_model_prior`` each candidate's score also gets a learned offset for its source model
(``ModelPrior``): in offline blending the model behind each answer is known, and some models are
simply better. A model the prior has not seen gets offset 0.

It is a plain `transformers` model: ``save_pretrained`` / ``from_pretrained`` in safetensors, no
blendkit training code needed to use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from ..core.markers import add_marker_tokens, init_marker_embeddings
from ..core.offline import resolve_model
from .config import MARKER_WORDS, PairRankerConfig, checked_model_names

NUM_LENGTH_FEATURES = 2  # log1p(full length in tokens) / 8, truncated flag
DROPOUT_FIELDS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout")


@dataclass
class PairRankerOutput(ModelOutput):
    """``logits``: (batch,) log-odds that candidate A beats B. ``scores``: (batch, 2) per-candidate
    scores of A and B in this pair's context. ``loss``: BCE against ``labels`` if given."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    scores: torch.Tensor | None = None


class ModelPrior(nn.Module):
    """A learned score offset per known source model, and optionally a learned multiple of the candidate's
    length feature. Index 0 is the unknown model: its offset is a constant 0, not a parameter, so neither
    training nor weight decay can move it."""

    def __init__(self, num_models: int, length: bool = False):
        super().__init__()
        self.offsets = nn.Parameter(torch.zeros(num_models))
        self.length_weight = nn.Parameter(torch.zeros(())) if length else None

    def forward(self, model_ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        prior = nn.functional.pad(self.offsets, (1, 0))[model_ids]
        if self.length_weight is not None and lengths is not None:
            prior = prior + self.length_weight * lengths
        return prior

    def resize(self, num_models: int, start: torch.Tensor | None = None,
               length_weight: float | None = None) -> None:
        """Start over with ``num_models`` offsets, zero or ``start`` (before training: the names became known),
        and the length weight at 0 or ``length_weight``."""
        old = self.offsets
        offsets = torch.zeros(num_models, dtype=old.dtype, device=old.device)
        if start is not None:
            offsets.copy_(start)
        self.offsets = nn.Parameter(offsets, requires_grad=old.requires_grad)
        if self.length_weight is not None:
            with torch.no_grad():
                self.length_weight.fill_(0.0 if length_weight is None else length_weight)


class PairRankerModel(PreTrainedModel):
    config_class = PairRankerConfig
    config: PairRankerConfig
    base_model_prefix = "pairranker"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    def __init__(self, config: PairRankerConfig):
        super().__init__(config)
        self.encoder = AutoModel.from_config(config.encoder)
        if getattr(self.encoder, "pooler", None) is not None:
            # Unused by the ranker; left in place it would be a parameter without gradient under DDP/ZeRO.
            self.encoder.pooler = None
        hidden = config.encoder.hidden_size
        extra = NUM_LENGTH_FEATURES if config.use_length_features else 0
        self.head = nn.Sequential(
            nn.Linear(3 * hidden + extra, config.head_hidden_size),
            nn.GELU(),
            nn.Dropout(config.head_dropout),
            nn.Linear(config.head_hidden_size, 1),
        )
        self.model_prior = ModelPrior(len(config.model_names), config.prior_length) if config.use_model_prior \
            else None
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, ModelPrior):
            init.zeros_(module.offsets)     # an untrained prior prefers no model
            if module.length_weight is not None:
                init.zeros_(module.length_weight)

    def set_model_names(self, names: list[str], offsets: torch.Tensor | None = None,
                        length_weight: float | None = None) -> None:
        """Give the model prior its list of known models; every offset restarts at 0, or at ``offsets`` (one
        per name), and a length weight (``prior_length``) at 0 or ``length_weight``. The peft copy of the
        prior (LoRA's ``modules_to_save``) is resized too."""
        if not self.config.use_model_prior:
            raise ValueError("set_model_names: this ranker was built with use_model_prior=False.")
        self.config.model_names = checked_model_names(names)
        if offsets is not None and offsets.shape != (len(self.config.model_names),):
            raise ValueError(f"set_model_names: {len(self.config.model_names)} names but offsets of shape "
                             f"{tuple(offsets.shape)}")
        for module in self.modules():
            if isinstance(module, ModelPrior):
                module.resize(len(self.config.model_names), offsets, length_weight)

    def start_as_prior(self) -> None:
        """Zero the scoring head's output layer: every candidate's score is then the prior alone (the text
        part starts at 0 and grows as it learns; its first layer gets gradients once the output layer has
        moved). Reaches the peft copy of the head (LoRA's ``modules_to_save``) too."""
        with torch.no_grad():
            for name, module in self.named_modules():
                if isinstance(module, nn.Sequential) and "head" in name.split("."):
                    module[-1].weight.zero_()
                    module[-1].bias.zero_()

    @classmethod
    def from_backbone(cls, backbone: str, encoder_dropout: float | None = None,
                      **config_kwargs) -> tuple["PairRankerModel", "AutoTokenizer"]:
        """A new ranker on a pretrained encoder (Hub id or local path), with its extended tokenizer.

        The marker tokens are added to the tokenizer and the embedding matrix is grown to match
        (each marker starts from the embedding of a describing word). Only the scoring head is random.
        ``encoder_dropout`` overrides the backbone's dropout rates (0 makes CPU training ~3x faster:
        drawing dropout masks dominates a CPU forward pass). A decoder-only LM (``smollm2``,
        ``gemma3-270m``, any causal LM) becomes the encoder without its LM head, pooled at each part's
        last token; a tokenizer without a pad token pads with EOS.

        Example:
            >>> model, tokenizer = PairRankerModel.from_backbone("minilm", candidate_max_length=128)  # doctest: +SKIP
        """
        backbone = resolve_model(backbone)  # packaged aliases (minilm) work offline
        tokenizer = AutoTokenizer.from_pretrained(backbone)
        add_marker_tokens(tokenizer, MARKER_WORDS)
        if tokenizer.pad_token is None and tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token    # padding is masked out; any real token will do
        encoder_config = AutoConfig.from_pretrained(backbone)
        if encoder_dropout is not None:
            for name in DROPOUT_FIELDS:
                if hasattr(encoder_config, name):
                    setattr(encoder_config, name, encoder_dropout)
        encoder = AutoModel.from_pretrained(backbone, config=encoder_config)
        encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        init_marker_embeddings(encoder.get_input_embeddings(), tokenizer, MARKER_WORDS)
        config = PairRankerConfig(encoder=encoder.config.to_dict(), **config_kwargs)
        config.encoder.vocab_size = len(tokenizer)
        model = cls(config)
        state = {k: v for k, v in encoder.state_dict().items() if not k.startswith("pooler.")}
        missing, unexpected = model.encoder.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise RuntimeError(f"backbone {backbone!r} does not match its own config: missing {missing}, "
                               f"unexpected {unexpected}")
        return model, tokenizer

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.encoder.set_input_embeddings(value)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        segment_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        length_features: torch.Tensor | None = None,
        model_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> PairRankerOutput:
        """
        Args:
            input_ids, attention_mask: (batch, seq) as built by :class:`PairEncoder`.
            segment_ids: (batch, seq) 0 = source, 1 = candidate A, 2 = candidate B, -1 = padding.
            token_type_ids: (batch, seq) optional, for encoders with two token types.
            length_features: (batch, 2, NUM_LENGTH_FEATURES), required if ``use_length_features``.
            model_ids: (batch, 2) prior indices of A's and B's source models (``config.model_index()``,
                0 = unknown), read if ``use_model_prior``; None means both unknown.
            labels: (batch,) P(A better) targets in [0, 1].
        """
        encoder_inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            encoder_inputs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**encoder_inputs).last_hidden_state  # (B, T, H)

        source, cand_a, cand_b = self.pool(hidden, segment_ids).unbind(1)

        def score(candidate: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
            features = [source, candidate, source * candidate]
            if lengths is not None:
                features.append(lengths.to(hidden.dtype))
            return self.head(torch.cat(features, dim=-1)).squeeze(-1)

        if self.config.use_length_features:
            if length_features is None:
                raise ValueError("this ranker was built with use_length_features=True: pass length_features "
                                 "(PairEncoder does this).")
            scores = torch.stack([score(cand_a, length_features[:, 0]), score(cand_b, length_features[:, 1])], dim=1)
        else:
            scores = torch.stack([score(cand_a, None), score(cand_b, None)], dim=1)
        if self.model_prior is not None:
            if model_ids is None:
                model_ids = torch.zeros_like(scores, dtype=torch.long)
            lengths = length_features[..., 0] if self.config.prior_length else None
            scores = scores + self.model_prior(model_ids, lengths).to(scores.dtype)
        logits = scores[:, 0] - scores[:, 1]

        loss = None
        if labels is not None:
            loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), labels.float())
        return PairRankerOutput(loss=loss, logits=logits, scores=scores)

    def pool(self, hidden: torch.Tensor, segment_ids: torch.Tensor) -> torch.Tensor:
        """(B, T, H) hidden states -> (B, 3, H): one vector each for source, A and B."""
        parts = torch.stack([segment_ids == s for s in range(3)], dim=1)           # (B, 3, T)
        if self.config.pooling == "last":
            positions = torch.arange(hidden.shape[1], device=hidden.device)
            last = torch.where(parts, positions, -1).amax(-1).clamp(min=0)          # (B, 3)
            return hidden.gather(1, last.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
        parts = parts.to(hidden.dtype)
        return parts @ hidden / parts.sum(-1, keepdim=True).clamp(min=1.0)

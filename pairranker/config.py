"""PairRankerConfig: the backbone's own config plus the ranker's length budgets and head."""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES

from ..core.errors import ConfigError

# Markers added to the tokenizer (and the embedding matrix) so the encoder sees where each part starts.
SOURCE_TOKEN = "<source>"
CANDIDATE_A_TOKEN = "<candidate_a>"
CANDIDATE_B_TOKEN = "<candidate_b>"
MARKER_TOKENS = (SOURCE_TOKEN, CANDIDATE_A_TOKEN, CANDIDATE_B_TOKEN)
# Words whose embeddings the markers start from (see blendkit/core/markers.py).
MARKER_WORDS = {SOURCE_TOKEN: "question", CANDIDATE_A_TOKEN: "first answer", CANDIDATE_B_TOKEN: "second answer"}
# Encoders whose position ids start after the padding index (RoBERTa family): 2 positions are unusable.
OFFSET_POSITION_MODELS = ("roberta", "xlm-roberta", "camembert", "data2vec-text", "xlm-roberta-xl", "mpnet")
# How each part's hidden states become one vector: the mean of its tokens, or its last token.
POOLINGS = ("mean", "last")

# At most: each part is followed by one [SEP]; the sequence starts with [CLS]; each part has its marker.
SPECIAL_TOKENS_PER_PAIR = 1 + 3 * 2


class PairRankerConfig(PreTrainedConfig):
    """Configuration of :class:`PairRankerModel`.

    The input is ``[CLS] <source> instruction [SEP] <candidate_a> A [SEP] <candidate_b> B [SEP]``
    (decoder tokenizers, which have no CLS/SEP, use BOS/EOS). Each part is truncated to its own
    budget, so a long instruction or a long first answer can never push the second answer out of
    the window.

    Args:
        encoder: config of the backbone: any AutoModel encoder (BERT, MiniLM, MPNet, RoBERTa, DeBERTa,
            ELECTRA) or decoder-only LM (Llama/SmolLM2, Gemma 3, Qwen ...; its base model, no LM head).
        source_max_length: token budget of instruction (+ input).
        candidate_max_length: token budget of each candidate.
        head_hidden_size: width of the scoring MLP.
        head_dropout: dropout inside the scoring MLP.
        use_length_features: give the head each candidate's full length in tokens (log scale) and
            whether it was truncated. Truncation hides length from the encoder, and length is a
            strong signal of judged quality (65% pairwise agreement on AlpacaEval-Mix).
        pooling: ``mean`` (average of a part's tokens) or ``last`` (a part's last token). None picks
            ``mean`` for encoders and ``last`` for decoder-only backbones: under causal attention only a
            part's last token has read the whole part (and A never sees B; inference averages both
            orders, so each answer is also read after the other).
        use_model_prior: add a learned score offset per source model (``model_names``) to each
            candidate's score. Off by default, so the ranker judges anonymous answers by their text.
        model_names: the source models the prior knows, in the order of its offsets (offset k+1 is
            ``model_names[k]``); any other model, or none, gets offset 0.
        prior_length: the prior also adds a learned multiple of each candidate's length feature
            (log1p(tokens) / 8), so that "which model wrote it, and how long is it" is one linear part of
            the score beside the text head (needs ``use_model_prior`` and ``use_length_features``).
    """

    model_type = "blendkit-pairranker"
    sub_configs_defaults = {"encoder": SubConfigSpec(config_class=AutoConfig, model_type="bert")}

    encoder: PreTrainedConfig | dict | None = None
    source_max_length: int = 128
    candidate_max_length: int = 184   # 128 + 2·184 + 7 specials = 503: fits 512-position encoders
    head_hidden_size: int = 256
    head_dropout: float = 0.1
    use_length_features: bool = True
    pooling: str | None = None
    use_model_prior: bool = False
    model_names: list[str] | None = None
    prior_length: bool = False
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        for name in ("source_max_length", "candidate_max_length", "head_hidden_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}.")
        if not 0.0 <= self.head_dropout < 1.0:
            raise ConfigError(f"head_dropout must be in [0, 1), got {self.head_dropout!r}.")
        if self.pooling is None:
            self.pooling = "last" if is_decoder_only(self.encoder) else "mean"
        if self.pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {POOLINGS} (or None: chosen by the backbone), "
                              f"got {self.pooling!r}.")
        self.model_names = checked_model_names(self.model_names or [])
        if self.prior_length and not (self.use_model_prior and self.use_length_features):
            raise ConfigError("prior_length needs use_model_prior and use_length_features.")
        limit = getattr(self.encoder, "max_position_embeddings", None)
        if limit is not None and getattr(self.encoder, "model_type", "") in OFFSET_POSITION_MODELS:
            limit -= (self.encoder.pad_token_id or 0) + 1
        if limit is not None and self.pair_max_length > limit:
            raise ConfigError(
                f"source_max_length + 2 * candidate_max_length + {SPECIAL_TOKENS_PER_PAIR} special tokens "
                f"= {self.pair_max_length} exceeds the encoder's {limit} usable positions; got "
                f"source_max_length={self.source_max_length}, candidate_max_length={self.candidate_max_length}.")

    @property
    def pair_max_length(self) -> int:
        """Longest possible pair sequence, special tokens included."""
        return self.source_max_length + 2 * self.candidate_max_length + SPECIAL_TOKENS_PER_PAIR

    def model_index(self) -> dict[str, int]:
        """Source model name -> index of its prior offset (0, the unknown model, is not listed)."""
        return {name: k + 1 for k, name in enumerate(self.model_names)}


def checked_model_names(names) -> list[str]:
    """``names`` as a list, if they are distinct non-empty strings."""
    names = list(names)
    if any(not isinstance(name, str) or not name for name in names):
        raise ConfigError(f"model_names must be non-empty strings, got {names!r}.")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"model_names must be distinct; {duplicates} appear more than once.")
    return names


def is_decoder_only(config: PreTrainedConfig | dict | None) -> bool:
    """True for causal LMs (Llama, Gemma, Qwen, GPT-2 ...): a causal-LM architecture and no masked-LM one.
    (BERT and RoBERTa have both and stay encoders.)"""
    model_type = config.get("model_type") if isinstance(config, dict) else getattr(config, "model_type", None)
    return model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES

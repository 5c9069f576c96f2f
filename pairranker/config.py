"""PairRankerConfig: the backbone's own config plus the ranker's length budgets and head."""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from ..core.errors import ConfigError

# Markers added to the tokenizer (and the embedding matrix) so the encoder sees where each part starts.
SOURCE_TOKEN = "<source>"
CANDIDATE_A_TOKEN = "<candidate_a>"
CANDIDATE_B_TOKEN = "<candidate_b>"
MARKER_TOKENS = (SOURCE_TOKEN, CANDIDATE_A_TOKEN, CANDIDATE_B_TOKEN)
# Words whose embeddings the markers start from (see blendkit/core/markers.py).
MARKER_WORDS = {SOURCE_TOKEN: "question", CANDIDATE_A_TOKEN: "first answer", CANDIDATE_B_TOKEN: "second answer"}
# Encoders whose position ids start after the padding index (RoBERTa family): 2 positions are unusable.
OFFSET_POSITION_MODELS = ("roberta", "xlm-roberta", "camembert", "data2vec-text", "xlm-roberta-xl")

# Each part is followed by one [SEP]; the sequence starts with [CLS]; each part has its marker.
SPECIAL_TOKENS_PER_PAIR = 1 + 3 * 2


class PairRankerConfig(PreTrainedConfig):
    """Configuration of :class:`PairRankerModel`.

    The input is ``[CLS] <source> instruction [SEP] <candidate_a> A [SEP] <candidate_b> B [SEP]``.
    Each part is truncated to its own budget, so a long instruction or a long first answer can never
    push the second answer out of the window.

    Args:
        encoder: config of the backbone (any AutoModel encoder: BERT, MiniLM, RoBERTa, DeBERTa, ELECTRA).
        source_max_length: token budget of instruction (+ input).
        candidate_max_length: token budget of each candidate.
        head_hidden_size: width of the scoring MLP.
        head_dropout: dropout inside the scoring MLP.
        use_length_features: give the head each candidate's full length in tokens (log scale) and
            whether it was truncated. Truncation hides length from the encoder, and length is a
            strong signal of judged quality (65% pairwise agreement on AlpacaEval-Mix).
    """

    model_type = "blendkit-pairranker"
    sub_configs_defaults = {"encoder": SubConfigSpec(config_class=AutoConfig, model_type="bert")}

    encoder: PreTrainedConfig | dict | None = None
    source_max_length: int = 128
    candidate_max_length: int = 184   # 128 + 2·184 + 7 specials = 503: fits 512-position encoders
    head_hidden_size: int = 256
    head_dropout: float = 0.1
    use_length_features: bool = True
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        for name in ("source_max_length", "candidate_max_length", "head_hidden_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}.")
        if not 0.0 <= self.head_dropout < 1.0:
            raise ConfigError(f"head_dropout must be in [0, 1), got {self.head_dropout!r}.")
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

"""Build and load the fuser: a decoder-only LM, a `transformers` seq2seq model, or a bert2bert pair.

Which one is decided by the backbone's config (``is_causal``), so one ``Fuser`` API serves all:

- A causal LM (Llama, Qwen, Mistral, SmolLM2, Gemma, GPT-2 ...) loads with ``AutoModelForCausalLM``
  and keeps its tokenizer as it is: the prompt marks the candidates with plain-text headers
  (``genfuser/causal_formatting.py`` says why). The offline default ``smollm2`` is one.
- A seq2seq checkpoint (T5, Flan-T5, BART, ...) loads with ``AutoModelForSeq2SeqLM``.
- An encoder-only checkpoint (BERT/MiniLM) becomes an ``EncoderDecoderModel`` whose encoder and
  decoder both start from it (the decoder gains random cross-attention).

For the two seq2seq kinds the candidate markers ``<cand1>`` ... ``<candK>`` and ``<source>`` are
added to the tokenizer (and the embeddings grown to match), so a marker is one token that truncation
can never split. A LoRA adapter folder (``adapter_config.json``) of a causal fuser loads on top of the
base model it names.
"""

from __future__ import annotations

import json
import os

import torch
from peft import PeftModel
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    EncoderDecoderModel,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES

from ..core.errors import ConfigError
from ..core.markers import add_marker_tokens, init_marker_embeddings
from ..core.offline import load_error, resolve_model
from ..core.quiet import fresh_weights_expected

ADAPTER_CONFIG = "adapter_config.json"
# bert2bert's decoder gains cross-attention and an LM head (and drops the pooler): new weights by design
BERT2BERT_NEW_WEIGHTS = r"crossattention|cls\.predictions|pooler"

SOURCE_MARKER = "<source>"


def candidate_marker(k: int) -> str:
    """Marker of the k-th candidate (1-based), as LLM-Blender's GenFuser input marks them."""
    return f"<cand{k}>"


ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")


def marker_words(max_candidates: int) -> dict[str, str]:
    """Marker token -> the words its embedding starts from (see blendkit/core/markers.py)."""
    words = {SOURCE_MARKER: "question"}
    for k in range(1, max_candidates + 1):
        words[candidate_marker(k)] = f"{ORDINALS[k - 1]} answer" if k <= len(ORDINALS) else f"answer {k}"
    return words


def is_causal(config: PretrainedConfig) -> bool:
    """True for a decoder-only LM: its config names a ``*ForCausalLM`` / ``*LMHeadModel`` architecture, or,
    naming none, its type has a causal-LM class and no masked-LM one (BERT has both and is an encoder)."""
    if getattr(config, "is_encoder_decoder", False):
        return False
    architectures = getattr(config, "architectures", None) or []
    if architectures:
        return any(name.endswith(("ForCausalLM", "LMHeadModel")) for name in architectures)
    return config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and config.model_type not in \
        MODEL_FOR_MASKED_LM_MAPPING_NAMES


def build_fuser(backbone: str, max_candidates: int = 3, dropout: float | None = None) -> tuple[PreTrainedModel, object]:
    """A trainable fuser and its tokenizer from a Hub id, local path or packaged alias (the seq2seq kinds
    gain the marker tokens for ``max_candidates`` candidates)."""
    backbone = resolve_model(backbone)
    config = AutoConfig.from_pretrained(backbone)
    if is_causal(config):
        return _build_causal_fuser(backbone, config, dropout)
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    # generate() must not receive token_type_ids (BERT tokenizers produce them by default).
    tokenizer.model_input_names = ["input_ids", "attention_mask"]
    words = marker_words(max_candidates)
    add_marker_tokens(tokenizer, words)
    if getattr(config, "is_encoder_decoder", False):
        overrides = {"dropout_rate": dropout} if dropout is not None and hasattr(config, "dropout_rate") else {}
        if dropout is not None and hasattr(config, "dropout"):
            overrides["dropout"] = dropout
        model = AutoModelForSeq2SeqLM.from_pretrained(backbone, **overrides)
        if len(tokenizer) > model.get_input_embeddings().num_embeddings:
            model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        init_marker_embeddings(model.get_input_embeddings(), tokenizer, words)
        return model, tokenizer

    overrides = {}
    if dropout is not None:
        overrides = {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
    with fresh_weights_expected(BERT2BERT_NEW_WEIGHTS):   # transformers would list them as MISSING
        model = EncoderDecoderModel.from_encoder_decoder_pretrained(
            backbone, backbone, **{f"encoder_{k}": v for k, v in overrides.items()},
            **{f"decoder_{k}": v for k, v in overrides.items()})
    # EncoderDecoderModel cannot resize itself: grow each side, then record the new size.
    for side in (model.encoder, model.decoder):
        side.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        init_marker_embeddings(side.get_input_embeddings(), tokenizer, words)
    model.config.encoder.vocab_size = model.config.decoder.vocab_size = len(tokenizer)
    start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    end = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    for cfg in (model.config, model.generation_config):
        cfg.decoder_start_token_id = start
        cfg.pad_token_id = tokenizer.pad_token_id
        cfg.eos_token_id = end
    model.generation_config.bos_token_id = start
    return model, tokenizer


def _build_causal_fuser(backbone: str, config: PretrainedConfig, dropout: float | None):
    overrides = {"attention_dropout": dropout} if dropout is not None and hasattr(config, "attention_dropout") else {}
    # float32 weights to train from; recipes choose bf16 through Lightning's precision.
    model = AutoModelForCausalLM.from_pretrained(backbone, dtype=torch.float32, **overrides)
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    if tokenizer.pad_token_id is None:   # Llama-style tokenizers have none; padding is always masked
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def fuser_from_config(config: dict) -> PreTrainedModel:
    """An untrained fuser of a saved architecture (weights come from a checkpoint next)."""
    kwargs = {k: v for k, v in config.items() if k != "model_type"}
    built = AutoConfig.for_model(config["model_type"], **kwargs)
    return (AutoModelForCausalLM if is_causal(built) else AutoModelForSeq2SeqLM).from_config(built)


def load_fuser(path: str, dtype=None, base_model: str | None = None,
               merge_lora: bool = True) -> tuple[PreTrainedModel, object]:
    """A trained fuser folder (``save_pretrained`` output) with its tokenizer. A LoRA adapter folder loads on
    top of its base model (``base_model``, else the one its ``adapter_config.json`` names), merged into it
    unless ``merge_lora=False`` (then a peft model)."""
    kwargs = {"dtype": dtype} if dtype is not None else {}
    try:
        if os.path.exists(os.path.join(path, ADAPTER_CONFIG)):
            return _load_adapter(path, base_model, merge_lora, kwargs), AutoTokenizer.from_pretrained(path)
        auto = AutoModelForCausalLM if is_causal(AutoConfig.from_pretrained(path)) else AutoModelForSeq2SeqLM
        model = auto.from_pretrained(path, use_safetensors=True, **kwargs)
        return model, AutoTokenizer.from_pretrained(path)
    except ConfigError:
        raise
    except (OSError, ValueError) as error:
        raise load_error("fuser", path, error, "the output of blendkit export") from None


def adapter_base(path: str) -> tuple[str, str]:
    """(base model named by the adapter folder, peft task type)."""
    with open(os.path.join(path, ADAPTER_CONFIG), encoding="utf-8") as f:
        adapter = json.load(f)
    return adapter.get("base_model_name_or_path") or "", adapter.get("task_type") or ""


def _load_adapter(path: str, base_model: str | None, merge: bool, kwargs: dict) -> PreTrainedModel:
    named, task = adapter_base(path)
    if task != "CAUSAL_LM":
        # A seq2seq fuser's marker embeddings (and bert2bert's random cross-attention) are not in the adapter.
        raise ConfigError(f"{os.path.join(path, ADAPTER_CONFIG)}: field 'task_type' is {task!r}; adapter-only "
                          "folders load for causal fusers (CAUSAL_LM). Export a seq2seq fuser merged instead.")
    base = base_model or named
    if not base:
        raise ConfigError(f"{os.path.join(path, ADAPTER_CONFIG)}: field 'base_model_name_or_path' is empty, so the "
                          "base model is unknown; pass base_model= (a Hub id, packaged alias or local folder).")
    model = AutoModelForCausalLM.from_pretrained(resolve_model(base), use_safetensors=True, **kwargs)
    model = PeftModel.from_pretrained(model, path)
    return model.merge_and_unload() if merge else model

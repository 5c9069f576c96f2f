"""Build the fuser: any `transformers` seq2seq model, or a bert2bert pair made from an encoder.

- A seq2seq checkpoint (T5, Flan-T5, BART, ...) loads with ``AutoModelForSeq2SeqLM``.
- An encoder-only checkpoint (BERT/MiniLM) becomes an ``EncoderDecoderModel`` whose encoder and
  decoder both start from it (the decoder gains random cross-attention). With no pretrained T5/BART
  available offline, this is the default: ``minilm`` gives a 49M-parameter fuser that learns on CPU.

The candidate markers ``<cand1>`` ... ``<candK>`` and ``<source>`` are added to the tokenizer (and
the embeddings grown to match), so a marker is one token that truncation can never split.
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer, EncoderDecoderModel, PreTrainedModel

from ..core.markers import add_marker_tokens, init_marker_embeddings
from ..core.offline import load_error, resolve_model

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


def build_fuser(backbone: str, max_candidates: int = 3, dropout: float | None = None) -> tuple[PreTrainedModel, object]:
    """A trainable fuser and its tokenizer (with the marker tokens) from a Hub id, local path or packaged alias."""
    backbone = resolve_model(backbone)
    config = AutoConfig.from_pretrained(backbone)
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


def fuser_from_config(config: dict) -> PreTrainedModel:
    """An untrained fuser of a saved architecture (weights come from a checkpoint next)."""
    kwargs = {k: v for k, v in config.items() if k != "model_type"}
    return AutoModelForSeq2SeqLM.from_config(AutoConfig.for_model(config["model_type"], **kwargs))


def load_fuser(path: str, dtype=None) -> tuple[PreTrainedModel, object]:
    """A trained fuser folder (``save_pretrained`` output) with its tokenizer."""
    kwargs = {"dtype": dtype} if dtype is not None else {}
    try:
        model = AutoModelForSeq2SeqLM.from_pretrained(path, use_safetensors=True, **kwargs)
        return model, AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as error:
        raise load_error("fuser", path, error, "the output of infer.py export") from None

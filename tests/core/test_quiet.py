"""core/quiet.py drops exactly the known-harmless messages of other libraries, and nothing of blendkit's."""

from __future__ import annotations

import logging
import warnings

import torch
from safetensors.torch import load_file, save_file
from transformers import BertLMHeadModel, BertModel

from blendkit.core.quiet import fresh_weights_expected, quiet_third_party
from blendkit.genfuser.model import BERT2BERT_NEW_WEIGHTS


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _collect(name: str) -> tuple[logging.Logger, _Collect, int]:
    logger, handler = logging.getLogger(name), _Collect()
    level = logger.level
    logger.setLevel(logging.WARNING)
    logger.addHandler(handler)
    return logger, handler, level


def test_known_third_party_messages_are_dropped_and_ours_are_kept():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_third_party()
        quiet_third_party()   # idempotent
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use `TreeSpec.is_leaf()`", FutureWarning)
        warnings.warn("Version v4.12.0 introduces a better way to train encoder-decoder models by ...", FutureWarning)
        warnings.warn("exact weights: not converged after 50 iterations", UserWarning)
    assert [str(w.message) for w in caught] == ["exact weights: not converged after 50 iterations"]

    logger, handler, level = _collect("transformers.distributed.tensor_parallel")
    try:
        logger.warning("The following layers were not sharded: encoder.layer.*.attention.self.query.weight")
        logger.warning("The tensor-parallel plan failed")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert handler.messages == ["The tensor-parallel plan failed"]
    assert len([f for f in logger.filters if type(f).__name__ == "_DropMessages"]) == 1


def test_bert2bert_load_reports_are_dropped_but_other_missing_weights_still_show(tiny_backbone, tmp_path):
    broken = tmp_path / "broken"
    BertModel.from_pretrained(tiny_backbone).save_pretrained(broken)
    weights = load_file(broken / "model.safetensors")
    del weights["encoder.layer.1.output.dense.weight"]
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})

    logger, handler, level = _collect("transformers.modeling_utils")
    try:
        torch.manual_seed(0)
        BertLMHeadModel.from_pretrained(tiny_backbone, is_decoder=True, add_cross_attention=True)  # bert2bert's decoder
        reported = list(handler.messages)
        handler.messages.clear()
        with fresh_weights_expected(BERT2BERT_NEW_WEIGHTS):
            BertLMHeadModel.from_pretrained(tiny_backbone, is_decoder=True, add_cross_attention=True)
            quiet = list(handler.messages)
            BertModel.from_pretrained(broken)
        still_shown = handler.messages[len(quiet):]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert any("LOAD REPORT" in m and "crossattention" in m for m in reported), "transformers reports them"
    assert quiet == []
    assert any("LOAD REPORT" in m and "encoder.layer.1.output.dense.weight" in m for m in still_shown), still_shown
    assert logger.filters == [] or all(type(f).__name__ != "_FreshWeightsReport" for f in logger.filters)

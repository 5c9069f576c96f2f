"""Shared fixtures: a tiny random BERT on the real MiniLM tokenizer, and MixInstruct files in tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import make_row, write_jsonl

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "data" / "samples"


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> str:
    """A 2-layer, 32-wide BERT with random weights and the MiniLM tokenizer, saved as a folder."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from blendkit.offline import resolve_model

    path = tmp_path_factory.mktemp("tiny_bert")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("minilm"))
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=512, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_ranker(tiny_backbone):
    """(model, tokenizer) of a tiny PairRankerModel in eval mode."""
    import torch

    from blendkit.pairranker import PairRankerModel

    torch.manual_seed(0)
    model, tokenizer = PairRankerModel.from_backbone(tiny_backbone, source_max_length=16, candidate_max_length=24,
                                                     head_hidden_size=16)
    return model.eval(), tokenizer


@pytest.fixture
def rows_file(tmp_path) -> str:
    rows = [make_row(f"r{k}", [0.1 * ((k + j) % 5) + 0.01 * j for j in range(4)]) for k in range(6)]
    return write_jsonl(tmp_path / "rows.jsonl", rows)

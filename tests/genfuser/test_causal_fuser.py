"""The causal fuser end to end on a tiny random Llama: training, export (merged, adapter-only, from a
checkpoint, re-saved), reload with identical greedy generations, the fuse command, copy metrics; and
once on the real SmolLM2-135M-Instruct (slow)."""

import json
import os

import pytest
import torch
from helpers import ROOT, make_row, write_jsonl
from transformers import AutoConfig, AutoModelForCausalLM

from blendkit import commands
from blendkit.core.offline import resolve_model
from blendkit.data import ConfigError
from blendkit.genfuser import Fuser
from blendkit.genfuser.metrics import FusionMetrics
from blendkit.genfuser.model import is_causal
from blendkit.hub.export import folder_kind
from blendkit.training.cli import train_cli as cli

RECIPE = str(ROOT / "configs" / "genfuser" / "smollm2_cpu.yaml")
INSTRUCTIONS = ["Say something useful.", "Another question"]
CANDIDATES = [["word word answer 0", "word answer 1", "answer 2", "ignored 4th"], ["only one"]]


def _data(tmp_path):
    rows = [make_row(f"t{k}", [0.1 * ((k + j) % 4) for j in range(4)], output=f"the fused answer number {k % 3}")
            for k in range(12)]
    return write_jsonl(tmp_path / "train.jsonl", rows), write_jsonl(tmp_path / "val.jsonl", rows[:4])


def _args(backbone, tmp_path, *extra):
    train, val = _data(tmp_path)
    return ["fit", "--config", RECIPE, "--model.backbone", backbone, "--model.source_max_length", "16",
            "--model.candidate_max_length", "12", "--model.target_max_length", "12", "--model.learning_rate", "3e-2",
            "--model.generate_kwargs", '{"max_new_tokens": 8}', "--model.bertscore_model", "null",
            "--model.lora_r", "0", "--data.train_file", train, "--data.val_file", val, "--data.val_pool", "null",
            "--data.val_limit", "null", "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar",
            "false", "--model.export_dir", str(tmp_path / "export"), *extra]


def _fused(fuser: Fuser) -> list[str]:
    return [r.fused for r in fuser.fuse(INSTRUCTIONS, CANDIDATES, max_new_tokens=8)]


def _no_local_paths(folder, *paths) -> None:
    for name in os.listdir(folder):
        text = open(os.path.join(folder, name), encoding="utf-8", errors="replace").read()
        for path in (*paths, os.path.expanduser("~")):
            assert str(path) not in text, f"{name} holds the local path {path}"


def test_the_backbones_config_decides_causal_or_seq2seq(tiny_llama_a, tiny_backbone):
    assert is_causal(AutoConfig.from_pretrained(tiny_llama_a))
    assert not is_causal(AutoConfig.from_pretrained(tiny_backbone))                  # BERT: made bert2bert
    assert not is_causal(AutoConfig.for_model("t5"))
    assert is_causal(AutoConfig.for_model("qwen2")) and not is_causal(AutoConfig.for_model("bert"))


def test_causal_fuser_trains_and_reloads_from_export_and_checkpoint_alike(tiny_llama_a, tmp_path, capsys):
    run = cli(_args(tiny_llama_a, tmp_path, "--trainer.max_epochs", "6"))
    metrics = run.trainer.callback_metrics
    for name in ("val_loss", "val_fused_rougeL", "val_gain_rougeL", "val_copy_max_rougeL", "val_copy_top1_rougeL"):
        assert name in metrics, name
    assert float(metrics["val_loss"]) < 2.0   # it learned the 3 references: a uniform guess is ln(49152) = 10.8
    exported = tmp_path / "export"
    assert json.loads((exported / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    assert folder_kind(str(exported)) == "genfuser"
    _no_local_paths(exported, tiny_llama_a, tmp_path)

    fuser = Fuser.from_pretrained(str(exported))
    results = fuser.fuse(INSTRUCTIONS, CANDIDATES, ids=["a", "b"], max_new_tokens=8)
    assert [r.fused_from for r in results] == [[0, 1, 2], [0]]
    assert any(r.fused.startswith("the fused answer number") for r in results), results
    live = Fuser(run.model.model.eval(), run.model.tokenizer, **run.model.settings())
    assert _fused(live) == [r.fused for r in results]

    commands.dispatch(["export", "--checkpoint", str(tmp_path / "checkpoints" / "last.ckpt"), "--output",
                       str(tmp_path / "from_ckpt")])
    assert _fused(Fuser.from_pretrained(str(tmp_path / "from_ckpt"))) == [r.fused for r in results]
    commands.dispatch(["export", "--checkpoint", str(exported), "--output", str(tmp_path / "resaved")])
    assert _fused(Fuser.from_pretrained(str(tmp_path / "resaved"))) == [r.fused for r in results]
    capsys.readouterr()

    # blendkit fuse on the causal fuser: a fused answer per row, and the copy-awareness metrics.
    rows = write_jsonl(tmp_path / "rows.jsonl", [make_row(f"r{k}", [0.3, 0.2, 0.1]) for k in range(3)])
    commands.dispatch(["fuse", "--data", rows, "--model", str(exported), "--output", str(tmp_path / "fused.jsonl"),
                       "--quiet", "--bertscore-model", "none", "--max-new-tokens", "6"])
    summary = json.loads(capsys.readouterr().out)
    assert {"fused_rougeL", "copy_max_rougeL", "copy_top1_rougeL"} <= set(summary["metrics"])
    assert all(isinstance(json.loads(line)["fused"], str) for line in open(tmp_path / "fused.jsonl"))


def test_lora_fuser_merged_and_adapter_only_exports_generate_identically(tiny_llama_a, tmp_path, monkeypatch):
    # (with activation checkpointing, as the GPU recipes train: the adapters must still get gradients)
    run = cli(_args(tiny_llama_a, tmp_path, "--trainer.max_epochs", "3", "--model.lora_r", "4",
                    "--model.gradient_checkpointing", "true", "--data.val_file", "null"))
    trainable = [n for n, p in run.model.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert run.model.model.peft_config["default"].task_type == "CAUSAL_LM"
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_a)
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "export")
    key = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged.state_dict()[key], base.state_dict()[key])

    live = _fused(Fuser(run.model.model.eval(), run.model.tokenizer, **run.model.settings()))
    assert _fused(Fuser.from_pretrained(str(tmp_path / "export"))) == live

    # Adapter only, from a local base: the folder keeps no path, so loading it asks for the base.
    adapter = tmp_path / "adapter"
    run.model.export(str(adapter), merge_lora=False)
    assert not (adapter / "model.safetensors").exists() and (adapter / "adapter_model.safetensors").exists()
    assert folder_kind(str(adapter)) == "genfuser"
    _no_local_paths(adapter, tiny_llama_a, tmp_path)
    with pytest.raises(ConfigError, match="field 'base_model_name_or_path' is empty"):
        Fuser.from_pretrained(str(adapter))
    assert _fused(Fuser.from_pretrained(str(adapter), base_model=tiny_llama_a)) == live
    commands.dispatch(["export", "--checkpoint", str(tmp_path / "checkpoints" / "last.ckpt"), "--adapter-only",
                       "--output", str(tmp_path / "ckpt_adapter")])
    assert (tmp_path / "ckpt_adapter" / "adapter_model.safetensors").exists()
    assert _fused(Fuser.from_pretrained(str(tmp_path / "ckpt_adapter"), base_model=tiny_llama_a)) == live

    # With the base named as a Hub id (what a Hub backbone or a packaged alias records), it loads by itself,
    # and re-saving the folder keeps it an adapter that names its base.
    monkeypatch.setattr("blendkit.genfuser.model.resolve_model",
                        lambda name: tiny_llama_a if name == "someorg/tiny-llama" else resolve_model(name))
    named = tmp_path / "named"
    run.model.export(str(named), merge_lora=False, card={"base_model": "someorg/tiny-llama"})
    assert json.loads((named / "adapter_config.json").read_text())["base_model_name_or_path"] == "someorg/tiny-llama"
    assert _fused(Fuser.from_pretrained(str(named))) == live
    commands.dispatch(["export", "--checkpoint", str(named), "--output", str(tmp_path / "resaved")])
    assert (tmp_path / "resaved" / "adapter_model.safetensors").exists()
    assert _fused(Fuser.from_pretrained(str(tmp_path / "resaved"))) == live


def test_copy_metrics_measure_overlap_with_the_fused_inputs():
    metrics = FusionMetrics(bertscore_model=None)
    metrics.update(["the cat sat on the mat"], ["a dog"], ["the cat sat"])
    assert "copy_max_rougeL" not in metrics.compute()
    metrics.reset()
    metrics.update(["the cat sat on the mat", "dogs bark loudly"], ["x", "y"], ["the cat", "dogs"],
                   candidates=[["the cat sat on the mat", "birds sing"], ["cats meow", "dogs bark loudly at night"]])
    values = metrics.compute()
    assert values["copy_max_rougeL"] == pytest.approx(100 * (1 + 0.75) / 2)   # exact copy; 3 of 3 and 3 of 5 words
    assert values["copy_top1_rougeL"] == pytest.approx(100 * (1 + 0) / 2)


@pytest.mark.slow
def test_smollm2_lora_fuser_round_trips_through_an_adapter_naming_its_hub_id(tmp_path):
    """The real offline default: a few LoRA steps, then merged and adapter-only exports that reload by name."""
    run = cli(_args("smollm2", tmp_path, "--trainer.max_steps", "2", "--model.lora_r", "4", "--model.learning_rate",
                    "1e-3", "--data.batch_size", "2", "--data.val_file", "null"))
    adapter = tmp_path / "adapter"
    run.model.export(str(adapter), merge_lora=False)
    named = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert named == "HuggingFaceTB/SmolLM2-135M-Instruct"
    for folder in (adapter, tmp_path / "export"):
        _no_local_paths(folder, tmp_path, resolve_model("smollm2"))
    live = _fused(Fuser(run.model.model.eval(), run.model.tokenizer, **run.model.settings()))
    assert _fused(Fuser.from_pretrained(str(tmp_path / "export"))) == live
    assert _fused(Fuser.from_pretrained(str(adapter))) == live
    assert all(text.strip() for text in live)   # a pretrained instruct model answers from the first steps

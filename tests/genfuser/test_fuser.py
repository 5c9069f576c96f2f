"""GenFuser on tiny models: formatting budgets, training, save/reload/generate round trip, LoRA, checkpoints."""

import json
import os

import pytest
import torch
from helpers import ROOT, make_row, write_jsonl
from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

from blendkit.data import ConfigError
from blendkit.genfuser import Fuser, build_fuser
from blendkit.genfuser.formatting import FuserFormatter
from blendkit.genfuser.model import candidate_marker
from blendkit.training.cli import train_cli as cli

RECIPE = str(ROOT / "configs" / "genfuser" / "minilm_cpu.yaml")


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory, tiny_backbone) -> str:
    """A tiny random T5 on the MiniLM tokenizer (the offline seq2seq fallback of ../shared/MODELS.md)."""
    path = tmp_path_factory.mktemp("tiny_t5")
    tokenizer = AutoTokenizer.from_pretrained(tiny_backbone)
    config = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2,
                      num_heads=4, dropout_rate=0.0, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.sep_token_id, decoder_start_token_id=tokenizer.cls_token_id)
    torch.manual_seed(0)
    T5ForConditionalGeneration(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def test_formatter_gives_every_candidate_its_budget(tiny_backbone):
    model, tokenizer = build_fuser(tiny_backbone, max_candidates=3)
    formatter = FuserFormatter(tokenizer, top_k=3, source_max_length=8, candidate_max_length=5, target_max_length=6)
    huge = "word " * 10_000
    [source] = formatter.encode_sources([huge], [[huge, "short one", huge]])
    markers = [tokenizer.convert_tokens_to_ids(candidate_marker(k)) for k in (1, 2, 3)]
    positions = [source.index(m) for m in markers]
    assert source[0] == tokenizer.cls_token_id and source[-1] == tokenizer.sep_token_id
    assert positions[0] == 2 + 8                                # [CLS] <source> + 8 instruction tokens
    assert positions[1] - positions[0] == 1 + 5                 # marker + full candidate budget
    assert positions[2] - positions[1] == 1 + len(tokenizer("short one", add_special_tokens=False)["input_ids"])
    assert len(source) <= formatter.source_length
    [target] = formatter.encode_targets([huge])
    assert len(target) == 6 and target[-1] == tokenizer.sep_token_id
    with pytest.raises(ConfigError, match="exceeds the encoder's 512 positions"):
        FuserFormatter(tokenizer, top_k=3, source_max_length=200, candidate_max_length=200, max_positions=512)
    with pytest.raises(ConfigError, match="top_k=5 needs the markers"):
        FuserFormatter(tokenizer, top_k=5)


def test_marker_strings_inside_user_text_stay_text(tiny_backbone):
    """An answer or instruction that contains "<cand2>" must not put the marker token into the input."""
    _, tokenizer = build_fuser(tiny_backbone, max_candidates=3)
    formatter = FuserFormatter(tokenizer, top_k=3, source_max_length=16, candidate_max_length=16)
    markers = {tokenizer.convert_tokens_to_ids(m) for m in ("<source>", *(candidate_marker(k) for k in (1, 2, 3)))}
    [source] = formatter.encode_sources(["Quote <source> and <cand3>"], [["I say <cand2> here", "b", "c"]])
    assert sum(token in markers for token in source) == 4   # <source>, <cand1>, <cand2>, <cand3> once each
    [target] = formatter.encode_targets(["the answer is <cand1>"])
    assert not markers & set(target)


def _data(tmp_path):
    rows = [make_row(f"t{k}", [0.1 * ((k + j) % 4) for j in range(4)], output=f"the fused answer number {k % 3}")
            for k in range(12)]
    return write_jsonl(tmp_path / "train.jsonl", rows), write_jsonl(tmp_path / "val.jsonl", rows[:4])


def _args(backbone, data, root, *extra):
    train, val = data
    return ["fit", "--config", RECIPE, "--model.backbone", backbone, "--model.source_max_length", "16",
            "--model.candidate_max_length", "12", "--model.target_max_length", "12", "--model.learning_rate", "3e-3",
            "--model.generate_kwargs", '{"max_new_tokens": 10, "num_beams": 1}', "--model.bertscore_model", "null",
            "--data.train_file", train, "--data.val_file", val, "--data.val_pool", "null", "--data.batch_size", "4",
            "--data.val_limit", "null", "--trainer.default_root_dir", str(root), "--trainer.enable_progress_bar",
            "false", "--model.export_dir", str(root / "export"), *extra]


@pytest.mark.parametrize("kind", ["bert2bert", "t5"])
def test_train_save_reload_generate_round_trip(kind, tiny_backbone, tiny_t5, tmp_path):
    backbone = tiny_backbone if kind == "bert2bert" else tiny_t5
    run = cli(_args(backbone, _data(tmp_path), tmp_path, "--trainer.max_epochs", "3"))
    metrics = run.trainer.callback_metrics
    for name in ("val_fused_rougeL", "val_selected_rougeL", "val_gain_rougeL", "val_fused_bleu", "val_loss"):
        assert name in metrics, name
    assert float(metrics["train_loss"]) < 10.0  # it learned: a uniform guess scores ln(30527) = 10.33

    exported = tmp_path / "export"
    assert (exported / "model.safetensors").exists() and (exported / "blendkit_fuser.json").exists()
    settings = json.loads((exported / "blendkit_fuser.json").read_text())
    assert settings == {"top_k": 3, "source_max_length": 16, "candidate_max_length": 12, "target_max_length": 12}

    # Greedy generations are identical from the trained module and from the reloaded folder.
    fuser = Fuser.from_pretrained(str(exported))
    instructions = ["Say something useful.", "Another question"]
    candidates = [["word word answer 0", "word answer 1", "answer 2", "ignored 4th"], ["only one"]]
    results = fuser.fuse(instructions, candidates, ids=["a", "b"], max_new_tokens=10)
    assert [r.id for r in results] == ["a", "b"] and results[0].fused_from == [0, 1, 2]
    assert results[1].fused_from == [0]
    module = run.model.eval()
    live = Fuser(module.model, module.tokenizer, **settings)
    assert [r.fused for r in live.fuse(instructions, candidates, max_new_tokens=10)] == [r.fused for r in results]

    # Export from the Lightning checkpoint without the original backbone gives the same weights.
    from blendkit import commands

    commands.dispatch(["export", "--checkpoint", str(tmp_path / "checkpoints" / "last.ckpt"), "--output",
                str(tmp_path / "from_ckpt")])
    again = Fuser.from_pretrained(str(tmp_path / "from_ckpt"))
    assert [r.fused for r in again.fuse(instructions, candidates, max_new_tokens=10)] == [r.fused for r in results]


def test_selection_by_ranks_and_by_ranker(tiny_t5, tiny_ranker):
    model, tokenizer = build_fuser(tiny_t5, max_candidates=2)
    fuser = Fuser(model, tokenizer, top_k=2, source_max_length=8, candidate_max_length=8, target_max_length=8)
    [by_rank] = fuser.fuse(["q"], [["a", "b", "c"]], ranks=[[3, 1, 2]], max_new_tokens=3)
    assert by_rank.fused_from == [1, 2]
    from blendkit.pairranker import Ranker

    ranker = Ranker(*tiny_ranker)
    [ranked] = ranker.rank(["q"], [["a", "b", "c"]])
    [by_ranker] = fuser.fuse(["q"], [["a", "b", "c"]], ranker=ranker, max_new_tokens=3)
    assert by_ranker.fused_from == ranked.order[:2]
    with pytest.raises(ValueError, match="top_k=3 but this fuser was trained for at most 2"):
        fuser.fuse(["q"], [["a", "b", "c"]], top_k=3)
    with pytest.raises(ValueError, match="has no candidates"):
        fuser.fuse(["q"], [[]])


def test_lora_recipe_trains_adapters_only(tiny_t5, tmp_path):
    run = cli(_args(tiny_t5, _data(tmp_path), tmp_path, "--trainer.max_epochs", "1", "--model.lora_r", "4",
                    "--data.val_file", "null"))
    trainable = [n for n, p in run.model.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    base = T5ForConditionalGeneration.from_pretrained(tiny_t5)
    merged = T5ForConditionalGeneration.from_pretrained(tmp_path / "export")
    assert not torch.equal(merged.state_dict()["encoder.block.0.layer.0.SelfAttention.q.weight"],
                           base.state_dict()["encoder.block.0.layer.0.SelfAttention.q.weight"])
    run.model.export(str(tmp_path / "adapter"), merge_lora=False)
    assert os.path.exists(tmp_path / "adapter" / "adapter_model.safetensors")


def test_rows_without_reference_output_are_reported(tmp_path, tiny_t5):
    rows = [make_row("a", [0.1, 0.2], output="x"), make_row("b", [0.1, 0.2], output="")]
    train = write_jsonl(tmp_path / "t.jsonl", rows)
    with pytest.raises(Exception, match=r"t.jsonl, line 2, field 'output': missing or empty"):
        cli(_args(tiny_t5, (train, train), tmp_path, "--trainer.max_epochs", "1"))


@pytest.mark.parametrize("recipe", sorted((ROOT / "configs" / "genfuser").glob("*.yaml")), ids=lambda p: p.name)
def test_every_fuser_recipe_parses(recipe, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli(["fit", "--config", str(recipe), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "blendkit.genfuser.module.GenFuserModule" in printed and "precision:" in printed
    assert "16-mixed" not in printed.replace("bf16-mixed", "")  # T5 must not train in fp16

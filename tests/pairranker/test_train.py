"""The real training path (LightningCLI -> DataModule -> Module -> export) on a tiny backbone."""

import glob
import os

import pytest
import torch
from helpers import ROOT, make_row, write_jsonl

from blendkit.pairranker import PairRankerModel, Ranker
from blendkit.training.cli import train_cli as cli

RECIPE = str(ROOT / "configs" / "pairranker" / "minilm_cpu.yaml")


@pytest.fixture
def data_files(tmp_path):
    def rows(prefix, n):  # scores vary per row; longer answers score higher (learnable through length)
        return [make_row(f"{prefix}{k}", [((k * 7 + j * 3) % 10) / 10 for j in range(5)]) for k in range(n)]
    return write_jsonl(tmp_path / "train.jsonl", rows("t", 24)), write_jsonl(tmp_path / "val.jsonl", rows("v", 4))


def _args(tiny_backbone, data_files, root, *extra):
    train, val = data_files
    return ["fit", "--config", RECIPE, "--model.backbone", tiny_backbone, "--model.source_max_length", "16",
            "--model.candidate_max_length", "24", "--model.freeze_layers", "0", "--model.head_hidden_size", "16",
            "--model.learning_rate", "1e-3", "--model.head_learning_rate", "1e-2",
            "--data.train_file", train, "--data.val_file", val, "--data.val_pool", "null",
            "--data.pairs_per_row", "6", "--data.batch_size", "8", "--data.val_limit", "null",
            "--trainer.default_root_dir", str(root), "--trainer.enable_progress_bar", "false",
            "--model.export_dir", str(root / "export"), *extra]


def test_fit_validates_checkpoints_resumes_and_exports(tiny_backbone, data_files, tmp_path):
    run = cli(_args(tiny_backbone, data_files, tmp_path, "--trainer.max_epochs", "2"))
    metrics = run.trainer.callback_metrics
    for name in ("val_top1", "val_judge_rank", "val_pair_acc", "val_spearman", "val_kendall", "val_oracle",
                 "train_loss"):
        assert name in metrics, name
    assert 0 <= metrics["val_pair_acc"] <= 100 and -1 <= metrics["val_spearman"] <= 1
    assert 1 <= metrics["val_judge_rank"] <= 5   # val rows have 5 candidates
    assert metrics["val_top1"] <= metrics["val_oracle"] + 1e-4
    steps_per_epoch = -(-24 * 6 // 8)
    assert run.trainer.global_step == 2 * steps_per_epoch
    assert os.path.exists(tmp_path / "checkpoints" / "last.ckpt")

    # The export is a plain transformers folder equal to the trained weights.
    exported = PairRankerModel.from_pretrained(tmp_path / "export")
    trained = run.model.model.state_dict()
    assert all(torch.equal(exported.state_dict()[k], v) for k, v in trained.items())
    Ranker.from_pretrained(str(tmp_path / "export")).rank("q", ["a", "b", "c"])

    # Resume with `--ckpt_path last`: the step count continues and the optimizer state is restored.
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    resumed = cli(_args(tiny_backbone, data_files, tmp_path, "--trainer.max_epochs", "3", "--ckpt_path", "last"))
    assert resumed.trainer.global_step == 3 * steps_per_epoch
    state = resumed.trainer.optimizers[0].state_dict()["state"]
    assert state and all(int(s["step"]) == 3 * steps_per_epoch for s in state.values())  # Adam state continued
    assert int(next(iter(saved["optimizer_states"][0]["state"].values()))["step"]) == 2 * steps_per_epoch


def test_checkpoint_exports_without_the_backbone(tiny_backbone, data_files, tmp_path):
    import shutil

    from blendkit import commands

    backbone = shutil.copytree(tiny_backbone, tmp_path / "backbone")
    cli(_args(str(backbone), data_files, tmp_path, "--trainer.max_epochs", "1", "--data.val_file", "null"))
    shutil.rmtree(backbone)  # the checkpoint carries the architecture and the tokenizer itself
    commands.dispatch(["export", "--checkpoint", str(tmp_path / "checkpoints" / "last.ckpt"), "--output",
                str(tmp_path / "from_ckpt")])
    a = PairRankerModel.from_pretrained(tmp_path / "export").state_dict()
    b = PairRankerModel.from_pretrained(tmp_path / "from_ckpt").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_training_learns_the_length_signal(tiny_backbone, data_files, tmp_path):
    run = cli(_args(tiny_backbone, data_files, tmp_path, "--trainer.max_epochs", "4"))
    assert run.trainer.callback_metrics["val_pair_acc"] > 80.0


def test_lora_trains_adapters_and_head_only(tiny_backbone, data_files, tmp_path):
    run = cli(_args(tiny_backbone, data_files, tmp_path, "--trainer.max_epochs", "1", "--model.lora_r", "4",
                    "--model.lora_alpha", "8"))
    peft_model = run.model.model
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert any("lora_A" in n for n in trainable) and any("modules_to_save" in n and "head" in n for n in trainable)
    assert not any("word_embeddings" in n or ("attention.output.dense" in n and "lora" not in n) for n in trainable)
    merged = PairRankerModel.from_pretrained(tmp_path / "export")
    assert not any("lora" in k for k in merged.state_dict())
    fresh, _ = PairRankerModel.from_backbone(tiny_backbone, source_max_length=16, candidate_max_length=24,
                                             head_hidden_size=16)
    assert not torch.equal(merged.head[0].weight, fresh.head[0].weight)  # the trained head was saved
    # The LoRA checkpoint exports (merged) to the same weights
    from blendkit import commands

    commands.dispatch(["export", "--checkpoint", str(tmp_path / "checkpoints" / "last.ckpt"), "--output",
                str(tmp_path / "from_ckpt")])
    from_ckpt = PairRankerModel.from_pretrained(tmp_path / "from_ckpt").state_dict()
    assert all(torch.equal(from_ckpt[k], v) for k, v in merged.state_dict().items())
    # Adapter-only export, from the checkpoint through the CLI, with its model card
    commands.dispatch(["export", "--checkpoint", str(tmp_path / "checkpoints" / "last.ckpt"), "--output",
                str(tmp_path / "adapter"), "--adapter-only"])
    assert os.path.exists(tmp_path / "adapter" / "adapter_config.json")
    assert os.path.exists(tmp_path / "adapter" / "adapter_model.safetensors")
    import yaml

    meta = yaml.safe_load((tmp_path / "adapter" / "README.md").read_text().split("---")[1])
    assert meta["library_name"] == "peft" and "pairranker" in meta["tags"]


@pytest.mark.parametrize("recipe", sorted(glob.glob(str(ROOT / "configs" / "pairranker" / "*.yaml"))),
                         ids=os.path.basename)
def test_every_recipe_parses(recipe, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli(["fit", "--config", recipe, "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "blendkit.pairranker.module.PairRankerModule" in printed
    assert "reload_dataloaders_every_n_epochs: 1" in printed


_KILL_AT_STEP = """
import os, signal, sys
from pytorch_lightning import Callback
from blendkit.training.cli import BlendkitCLI, train_cli

class KillAt(Callback):
    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == int(os.environ["KILL_AT"]):
            os.kill(os.getpid(), signal.SIGKILL)

before_fit = BlendkitCLI.before_fit
def with_killer(self):
    before_fit(self)
    self.trainer.callbacks.append(KillAt())
BlendkitCLI.before_fit = with_killer
train_cli(sys.argv[1:])
"""


@pytest.mark.slow
def test_training_killed_mid_epoch_resumes_with_its_steps_and_optimizer(tiny_backbone, data_files, tmp_path):
    """SIGKILL at step 13 of an 18-step epoch; `--ckpt_path last` (saved at step 10) continues to the same
    final step count with the optimizer state carried over, and ends as good as an uninterrupted run."""
    import subprocess
    import sys

    from blendkit.data import ScoreSpec, load_mixinstruct
    from blendkit.pairranker.batch import rank_dataset

    every5 = tmp_path / "every5.yaml"
    every5.write_text("trainer:\n  callbacks:\n    - class_path: pytorch_lightning.callbacks.ModelCheckpoint\n"
                      "      init_args: {save_last: true, save_top_k: 0, every_n_train_steps: 5}\n")

    def args(root, *extra):
        return _args(tiny_backbone, data_files, root, "--config", str(every5), "--trainer.max_steps", "30",
                     "--data.val_file", "null", *extra)

    whole = cli(args(tmp_path / "whole"))
    assert whole.trainer.global_step == 30
    env = {**os.environ, "PYTHONPATH": str(ROOT.parent) + os.pathsep + str(ROOT), "KILL_AT": "13"}
    killed = subprocess.run([sys.executable, "-c", _KILL_AT_STEP, *args(tmp_path / "killed")], env=env,
                            capture_output=True, text=True, cwd=ROOT)
    assert killed.returncode == -9, killed.stderr[-2000:]
    saved = torch.load(tmp_path / "killed" / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 10 and saved["epoch"] == 0              # a mid-epoch checkpoint
    resumed = cli(args(tmp_path / "killed", "--ckpt_path", "last"))
    assert resumed.trainer.global_step == 30
    state = resumed.trainer.optimizers[0].state_dict()["state"]
    assert all(int(s["step"]) == 30 for s in state.values())                # Adam's moments continued from 10

    val = load_mixinstruct(data_files[1])
    scores = {}
    for name, run in (("whole", whole), ("resumed", resumed)):
        ranker = Ranker.from_pretrained(str(tmp_path / name.replace("resumed", "killed") / "export"))
        scores[name] = rank_dataset(ranker, val, score_spec=ScoreSpec(("judge",)), progress=False)[1]["pair_acc"]
    assert scores["whole"] > 60 and scores["resumed"] > 60, scores           # both learned the length signal
    assert abs(scores["whole"] - scores["resumed"]) <= 15, scores            # same quality within noise

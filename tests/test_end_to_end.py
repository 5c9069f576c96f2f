"""End to end on the real offline MiniLM: the CPU recipe trains, exports, reloads and ranks the sample."""

import json

import pytest
import torch
from helpers import ROOT

from blendkit import commands
from blendkit.pairranker import PairRankerModel
from blendkit.training.cli import train_cli as cli

pytestmark = pytest.mark.slow   # real models or subprocesses: left out by `make test-fast`


def test_minilm_recipe_trains_exports_and_ranks_the_sample(tmp_path, capsys):
    run = cli(["fit", "--config", str(ROOT / "configs/pairranker/minilm_cpu.yaml"), "--trainer.max_epochs", "1",
               "--trainer.limit_train_batches", "12", "--data.val_limit", "2", "--trainer.enable_progress_bar", "false",
               "--trainer.default_root_dir", str(tmp_path / "run"), "--model.export_dir", str(tmp_path / "export")])
    assert run.trainer.global_step == 12
    assert run.trainer.callback_metrics["val_rows"] == 2

    # The Lightning checkpoint exports to the same weights as the end-of-fit export.
    commands.dispatch(["export", "--checkpoint", str(tmp_path / "run" / "checkpoints" / "last.ckpt"),
                       "--output", str(tmp_path / "from_ckpt")])
    a = PairRankerModel.from_pretrained(tmp_path / "export").state_dict()
    b = PairRankerModel.from_pretrained(tmp_path / "from_ckpt").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    capsys.readouterr()

    out = tmp_path / "ranked.jsonl"
    commands.dispatch(["rank", "--data", str(ROOT / "data/samples/val.jsonl.gz"), "--pool",
                str(ROOT / "data/samples/pool12.txt"), "--model", str(tmp_path / "export"), "--output", str(out),
                "--limit", "3", "--quiet"])
    summary = json.loads(capsys.readouterr().out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and all(11 <= len(r["candidates"]) <= 12 for r in rows)
    assert summary["metrics"]["rows"] == 3 and 0 <= summary["metrics"]["pair_acc"] <= 100

"""The shared DataModule on a user's own data: errors say which setting to change, and how."""

from __future__ import annotations

import pytest
from helpers import ROOT, make_row, write_jsonl

from blendkit.data import PoolError
from blendkit.training.cli import train_cli

RECIPE = str(ROOT / "configs" / "pairranker" / "minilm_cpu.yaml")


def test_the_recipes_sample_pool_on_other_models_names_the_setting_and_the_fix(tiny_backbone, tmp_path):
    rows = [make_row(f"r{k}", [0.1, 0.5, 0.9]) for k in range(4)]          # models m0, m1, m2
    train, val = write_jsonl(tmp_path / "train.jsonl", rows), write_jsonl(tmp_path / "val.jsonl", rows)
    args = ["fit", "--config", RECIPE, "--model.backbone", tiny_backbone, "--model.freeze_layers", "0",
            "--data.train_file", train, "--data.val_file", val, "--trainer.default_root_dir", str(tmp_path),
            "--trainer.max_steps", "1", "--trainer.enable_progress_bar", "false", "--model.export_dir", "null"]
    with pytest.raises(PoolError) as error:   # only the files changed: val_pool stays the recipe's
        train_cli(args)
    message = str(error.value)
    assert message.startswith(f"{val}, line 1, field 'candidates': has 0 candidate(s) in the pool "
                              "data/samples/pool12.txt;")
    assert "The row's models: m0, m1, m2" in message
    assert "data.val_pool = 'data/samples/pool12.txt'" in message and "--data.val_pool null" in message

    run = train_cli([*args, "--data.val_pool", "null"])
    assert run.trainer.global_step == 1 and len(run.datamodule.val_data) == 4

"""Training shows its progress: ProgressLog's lines (steps done of total, loss, ETA) from the recipe's CLI."""

from __future__ import annotations

import re

import pytest
from helpers import ROOT, make_row, write_jsonl

from blendkit.training import progress
from blendkit.training.cli import train_cli
from blendkit.training.progress import ProgressLog

RECIPE = str(ROOT / "configs" / "pairranker" / "minilm_cpu.yaml")


def test_a_line_every_n_steps_with_loss_and_eta(tiny_backbone, tmp_path, monkeypatch):
    lines = []
    monkeypatch.setattr(progress, "rank_zero_info", lines.append)
    rows = [make_row(f"r{k}", [((k * 7 + j * 3) % 10) / 10 for j in range(4)]) for k in range(8)]
    data = write_jsonl(tmp_path / "rows.jsonl", rows)
    train_cli(["fit", "--config", RECIPE, "--model.backbone", tiny_backbone, "--model.freeze_layers", "0",
               "--model.source_max_length", "16", "--model.candidate_max_length", "24",
               "--model.head_hidden_size", "16", "--data.train_file", data, "--data.val_file", "null",
               "--data.pairs_per_row", "2", "--data.batch_size", "4", "--trainer.max_steps", "5",
               "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false",
               "--trainer.callbacks+=blendkit.training.progress.ProgressLog", "--trainer.callbacks.every_n_steps=2",
               "--model.export_dir", "null"])
    assert [re.match(r"\[blendkit\] step (\d+)/5 ", line).group(1) for line in lines] == ["2", "4", "5"], lines
    for line in lines:
        assert re.search(r"loss \d+\.\d{4}  [\d.]+ steps/s  elapsed \d:\d\d:\d\d  ETA \d:\d\d:\d\d$", line), line


def test_the_default_interval_is_about_five_percent_and_bad_intervals_are_refused():
    class Trainer:
        estimated_stepping_batches = 120
        global_step = 0

    log = ProgressLog()
    log.on_train_start(Trainer(), None)
    assert log.interval == 6 and log.total == 120
    assert "step 60/120 (50%)" in log.line(60)
    with pytest.raises(ValueError, match="every_n_steps must be >= 1"):
        ProgressLog(every_n_steps=0)

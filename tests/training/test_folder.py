"""Every exported folder is fit to upload: ordinary file modes, and no path of the machine that wrote it."""

from __future__ import annotations

import json
import os
import re
import stat
import struct
from pathlib import Path

import pytest
from helpers import ROOT, make_row, write_jsonl

from blendkit import commands
from blendkit.training.cli import train_cli

RECIPE = str(ROOT / "configs" / "pairranker" / "minilm_cpu.yaml")
PATH_LIKE = re.compile(r"/[^\s\"'`|<>()\[\]{},]+")


def _texts(folder: Path) -> dict[str, str]:
    """Every file's text; for safetensors files, their JSON header (the only text in them)."""
    texts = {}
    for path in sorted(folder.iterdir()):
        raw = path.read_bytes()
        if path.suffix == ".safetensors":
            raw = raw[8:8 + struct.unpack("<Q", raw[:8])[0]]
        texts[path.name] = raw.decode("utf-8")
    return texts


def _local_paths(text: str) -> list[str]:
    """Absolute paths in ``text`` that exist on this machine, two folders deep or more (a lone "/root"
    can be a token of a vocabulary; "/root/.cache/..." is a path)."""
    return [m for m in PATH_LIKE.findall(text) if len(Path(m).parts) > 2 and os.path.exists(m.rstrip(".:;"))]


def _check_folder(folder: Path, *local: str) -> None:
    expected = 0o666 & ~0o022
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
    assert modes and all(mode == expected for mode in modes.values()), {n: oct(m) for n, m in modes.items()}
    assert {"README.md"} < set(modes)
    for name, text in _texts(folder).items():
        found = _local_paths(text) + [p for p in local if p in text]
        assert not found, f"{folder.name}/{name} holds local paths: {found}"


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_exported_folders_have_ordinary_modes_and_no_local_paths(tiny_backbone, ranker_dir, fuser_dir, tmp_path,
                                                                 umask_022, capsys):
    rows = [make_row(f"r{k}", [((k * 7 + j * 3) % 10) / 10 for j in range(4)]) for k in range(8)]
    data = write_jsonl(tmp_path / "rows.jsonl", rows)
    run = tmp_path / "run"
    train_cli(["fit", "--config", RECIPE, "--model.backbone", tiny_backbone, "--model.freeze_layers", "0",
               "--model.source_max_length", "16", "--model.candidate_max_length", "24",
               "--model.head_hidden_size", "16", "--model.lora_r", "4", "--model.lora_alpha", "8",
               "--data.train_file", data, "--data.val_file", "null", "--data.pairs_per_row", "2",
               "--trainer.max_steps", "2", "--trainer.default_root_dir", str(run),
               "--trainer.enable_progress_bar", "false", "--model.export_dir", str(run / "export")])
    checkpoint = str(run / "checkpoints" / "last.ckpt")
    exports = {"training's export_dir (LoRA merged)": run / "export"}
    for name, source, extra in (("export of a checkpoint", checkpoint, []),
                                ("adapter-only export", checkpoint, ["--adapter-only"]),
                                ("re-saved ranker folder", ranker_dir, []),
                                ("re-saved bert2bert fuser folder", fuser_dir, [])):
        out = tmp_path / name.replace(" ", "_")
        commands.dispatch(["export", "--checkpoint", source, "--output", str(out), *extra])
        exports[name] = out
    capsys.readouterr()
    assert (exports["adapter-only export"] / "adapter_config.json").exists()
    fuser_config = json.loads(Path(fuser_dir, "config.json").read_text())
    assert os.path.isabs(fuser_config["encoder"]["_name_or_path"]), "the source folder itself records a local path"
    for name, folder in exports.items():
        _check_folder(folder, tiny_backbone, str(tmp_path), str(ROOT))


def test_the_local_path_check_finds_a_path(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"_name_or_path": str(tmp_path)}))
    assert _local_paths((tmp_path / "config.json").read_text()) == [str(tmp_path)]
    assert _local_paths('{"vocab": {"/root": 1, "/tmp": 2}}') == []

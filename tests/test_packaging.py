"""`pip install .` gives a `blendkit` command that works away from the source tree, with the recipes inside."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import pytest
from helpers import ROOT


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """blendkit built as a wheel and installed (without dependencies) into a folder of its own."""
    tmp = tmp_path_factory.mktemp("pip")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp / "wheel"), str(ROOT)], check=True, capture_output=True)
    [wheel] = glob.glob(str(tmp / "wheel" / "blendkit-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(tmp / "site"),
                    wheel], check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(tmp / "site"), "HF_HUB_OFFLINE": "1"}
    work = tmp / "elsewhere"
    work.mkdir()
    return tmp / "site", env, work


def _run(installed, *args) -> subprocess.CompletedProcess:
    site, env, work = installed
    return subprocess.run([str(site / "bin" / "blendkit"), *args], cwd=work, env=env, capture_output=True, text=True)


@pytest.mark.slow
def test_the_installed_package_is_the_one_imported_and_ships_its_recipes(installed):
    site, env, work = installed
    where = subprocess.run([sys.executable, "-c", "import blendkit; print(blendkit.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(site))
    assert (site / "blendkit" / "configs" / "pairranker" / "minilm_cpu.yaml").is_file()
    assert (site / "blendkit" / "data" / "samples" / "train.jsonl.gz").is_file()
    assert not (site / "blendkit" / "tests").exists() and not (site / "blendkit" / "benchmarks").exists()
    helped = _run(installed, "--help")
    assert helped.returncode == 0
    for command in ("train", "rank", "fuse", "generate", "blend", "export"):
        assert command in helped.stdout
    listed = _run(installed, "recipes").stdout.split()
    assert "pairranker/minilm_cpu" in listed and "genfuser/minilm_cpu" in listed


@pytest.mark.slow
def test_the_installed_command_trains_a_packaged_recipe(installed):
    site, env, work = installed
    result = _run(installed, "train", "fit", "--config", "pairranker/minilm_cpu", "--trainer.max_steps", "2",
                  "--data.val_file", "null", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
                  "--trainer.default_root_dir", "run",
                  "--model.export_dir", "run/export")
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((work / "run" / "export" / "config.json").read_text())
    assert config["model_type"] == "blendkit-pairranker"
    assert (work / "run" / "export" / "README.md").is_file()

"""A user sees only what concerns them: the commands, run on tiny models, raise no warning from blendkit's own
calls and print none of the libraries' known noise (load reports, DeepSpeed's accelerator notice, tips)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from helpers import ROOT

SAMPLE_VAL = str(ROOT / "data" / "samples" / "val.jsonl.gz")

# In a fresh process, so that no earlier test has already imported DeepSpeed or used up a "warn once".
DRIVER = """
import json, sys, warnings
from blendkit.commands import main

commands, report = json.loads(sys.argv[1]), sys.argv[2]
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    codes = [main(argv) for argv in commands]
with open(report, "w") as f:
    json.dump({"codes": codes, "deepspeed_imported": "deepspeed" in sys.modules,
               "warnings": [[w.filename, w.lineno, w.category.__name__, str(w.message)] for w in caught]}, f)
"""

# Messages that used to reach the console of a plain `make demo`, none of them the user's concern.
NOISE = ("seem corrupted", "LOAD REPORT", "MISSING", "Setting accelerator to CPU", "were not sharded", "Tip:",
         "litlogger", "tensorboardX", "LeafSpec", "past_key_values", "Version v4.12.0",
         "LightningCLI's args parameter", "Total length of `list`")


def _commands(tiny_backbone, ranker_dir, fuser_dir, tiny_llama_a, tiny_gemma, tmp):
    def train(recipe, name, *extra):
        return ["train", "fit", "--config", recipe, "--model.backbone", tiny_backbone, "--data.val_limit", "2",
                "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.log_every_n_steps", "1",
                "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", f"{tmp}/{name}",
                "--model.export_dir", f"{tmp}/{name}/export", *extra]

    return [
        train("pairranker/minilm_cpu", "ranker", "--model.freeze_layers", "0", "--data.pairs_per_row", "2",
              "--trainer.callbacks+=blendkit.training.progress.ProgressLog"),
        train("genfuser/minilm_cpu", "fuser", "--model.generate_kwargs", "{max_new_tokens: 4}",
              "--model.bertscore_model", tiny_backbone, "--data.batch_size", "2", "--data.val_file", "null"),
        ["export", "--checkpoint", f"{tmp}/ranker/checkpoints/last.ckpt", "--output", f"{tmp}/exported"],
        ["rank", "--data", SAMPLE_VAL, "--model", ranker_dir, "--output", f"{tmp}/ranked.jsonl", "--limit", "3",
         "--show", "1"],
        ["fuse", "--data", f"{tmp}/ranked.jsonl", "--model", fuser_dir, "--output", f"{tmp}/fused.jsonl",
         "--bertscore-model", tiny_backbone, "--max-new-tokens", "4", "--show", "1"],
        ["generate", "--models", tiny_llama_a, tiny_gemma, "--data", f"{tmp}/ranked.jsonl", "--limit", "2",
         "--max-new-tokens", "4", "--output", f"{tmp}/generated.jsonl"],
        ["blend", "--data", SAMPLE_VAL, "--ranker", ranker_dir, "--fuser", fuser_dir, "--limit", "2",
         "--max-new-tokens", "4", "--output", f"{tmp}/blended.jsonl", "--show", "1"],
    ]


def _in_blendkit(filename: str) -> bool:
    relative = os.path.relpath(os.path.abspath(filename), ROOT)
    return not relative.startswith("..") and relative.split(os.sep)[0] not in (".venv", "tests")


@pytest.mark.slow
def test_the_commands_print_no_noise_and_blendkit_raises_no_warning(tiny_backbone, ranker_dir, fuser_dir,
                                                                    tiny_llama_a, tiny_gemma, tmp_path):
    commands = _commands(tiny_backbone, ranker_dir, fuser_dir, tiny_llama_a, tiny_gemma, tmp_path)
    report = tmp_path / "report.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT.parent)}
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(commands), str(report)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    console = proc.stdout + proc.stderr
    assert proc.returncode == 0 and report.exists(), console[-4000:]
    result = json.loads(report.read_text())
    assert result["codes"] == [0] * len(commands), console[-4000:]
    ours = [w for w in result["warnings"] if _in_blendkit(w[0])]
    assert ours == [], f"warnings raised from blendkit's own calls: {ours}"
    noisy = [w for w in result["warnings"] if any(n in w[3] for n in NOISE)]
    assert noisy == [], f"known third-party noise raised as warnings: {noisy}"
    printed = [line for line in console.splitlines() if any(n in line for n in NOISE)]
    assert printed == [], "known noise on the console:\n" + "\n".join(printed)
    assert not result["deepspeed_imported"], "DeepSpeed was imported although no DeepSpeed strategy was chosen"
    assert re.search(r"\[blendkit\] step 2/2 \(100%\)  loss", console), "ProgressLog printed no line"

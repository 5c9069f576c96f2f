"""README.md cannot drift from the code: its python blocks run, its `blendkit` command lines parse with the real
parsers, and the "Your own data" steps run end to end, on the embedded sample and tiny models.

Folders that the README names as trained models (``runs/pairranker/minilm_cpu/export``, ...) are the tiny
fixtures, linked into the working directory; the two PackLLM models are swapped for two tiny ones that share
SmolLM2's tokenizer (aligning Gemma's vocabulary takes half a minute; tests/packllm covers it); training runs
two steps on the tiny backbone.
"""

from __future__ import annotations

import os
import re
import shlex

import pytest
from helpers import ROOT

from blendkit import commands
from blendkit.training.cli import train_cli

README = (ROOT / "README.md").read_text(encoding="utf-8")
OWN_DATA = "Your own data"


def _blocks(language: str) -> list[tuple[str, str]]:
    """(section heading, code) of every fenced block in ``language``, in order."""
    blocks, heading = [], ""
    for match in re.finditer(r"^(#+ [^\n]*)$|^```(\w*)\n(.*?)^```", README, re.M | re.S):
        if match.group(1):
            heading = match.group(1).lstrip("# ").strip()
        elif match.group(2) == language:
            blocks.append((heading, match.group(3)))
    return blocks


def _command_lines(code: str) -> list[list[str]]:
    """Each shell command of a block as its words (continuations joined, comments dropped)."""
    lines = [shlex.split(line, comments=True) for line in code.replace("\\\n", " ").splitlines()]
    return [words for words in lines if words]


def _synopsis(words: list[str]) -> list[str]:
    """A usage line made concrete: optional parts `[...]` kept, the first of `a|b|c` alternatives taken, the
    count placeholder N made a number."""
    out = []
    for word in words:
        word = "2" if word.strip("[]") == "N" else word.strip("[]")
        if word and not word.startswith("…"):
            out.append(word.split("|")[0] if "|" in word and not word.startswith("--") else word)
    return out


@pytest.fixture
def workdir(tmp_path, monkeypatch, ranker_dir, fuser_dir):
    for name, recipe, target in (("pairranker", "minilm_cpu", ranker_dir), ("genfuser", "minilm_cpu", fuser_dir),
                                 ("genfuser", "smollm2_cpu", fuser_dir)):
        link = tmp_path / "runs" / name / recipe / "export"
        link.parent.mkdir(parents=True)
        link.symlink_to(target)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    return tmp_path


def test_the_readme_has_the_blocks_this_test_checks():
    headings = [h for h, _ in _blocks("python")]
    assert {"Data: MixInstruct format", "PairRanker", "GenFuser", "PackLLM", OWN_DATA} <= set(headings), headings
    assert any(h == OWN_DATA for h, _ in _blocks("bash"))


def test_every_python_block_runs(workdir, tiny_llama_a, tiny_llama_b, capsys):
    namespace: dict = {}
    for heading, code in _blocks("python"):
        code = code.replace('"smollm2"', repr(tiny_llama_a)).replace('"gemma3-270m"', repr(tiny_llama_b))
        try:
            exec(compile(code, f"README.md ({heading})", "exec"), namespace)
        except Exception as error:
            raise AssertionError(f"the python block of README section {heading!r} fails: {error!r}") from error
    capsys.readouterr()
    assert namespace["results"][0].best in (0, 1, 2) and namespace["out"][0].finish_reason in ("eos", "stop", "length")
    assert (workdir / "my_train.jsonl").exists() and (workdir / "my_val.jsonl").exists()


def test_every_blendkit_command_line_parses(workdir, capsys):
    parser = commands.build_parser()
    checked = 0
    for heading, code in _blocks("bash"):
        if heading == OWN_DATA:
            continue   # run for real below
        for words in _command_lines(code):
            if words[0] != "blendkit":
                if words[0] == "python":
                    assert (ROOT / words[1]).exists(), f"README section {heading!r} runs a missing {words[1]}"
                continue
            args = _synopsis(words[1:])
            if args[0] == "train":   # Lightning's parser checks every argument, prints the config, stops
                with pytest.raises(SystemExit) as done:
                    train_cli([*args[1:], *(["--print_config"] if "--print_config" not in args else [])])
                assert done.value.code in (0, None), f"README section {heading!r}: `{' '.join(words)}` fails"
            else:
                try:
                    parser.parse_args(args)
                except SystemExit as error:
                    raise AssertionError(f"README section {heading!r}: `{' '.join(words)}` does not parse") from error
            checked += 1
    capsys.readouterr()
    assert checked >= 8


# Appended to each step of "Your own data": tiny backbone, two training steps, a few rows.
SMALL = {
    "pairranker": ["--model.freeze_layers", "0", "--model.source_max_length", "16", "--model.candidate_max_length",
                   "24"],
    "genfuser": ["--model.generate_kwargs", "{max_new_tokens: 4}", "--model.bertscore_model", "null",
                 "--data.batch_size", "2"],
    "train": ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.log_every_n_steps", "1",
              "--data.val_limit", "2", "--trainer.enable_progress_bar", "false"],
    "rank": ["--limit", "3"],
    "blend": ["--limit", "2", "--max-new-tokens", "4"],
}


@pytest.mark.slow
def test_your_own_data_steps_run_end_to_end(workdir, tiny_backbone, capsys):
    code = dict(_blocks("python"))[OWN_DATA]
    exec(compile(code, "README.md (Your own data)", "exec"), {})
    steps = _command_lines(dict(_blocks("bash"))[OWN_DATA])
    assert [words[1] for words in steps] == ["train", "train", "rank", "blend", "export"]
    for words in steps:
        args = words[1:]
        if args[0] == "train":
            kind = "pairranker" if "pairranker/" in " ".join(args) else "genfuser"
            args += ["--model.backbone", tiny_backbone, *SMALL[kind], *SMALL["train"]]
        args += SMALL.get(args[0], [])
        code = commands.main(args)
        err = capsys.readouterr().err
        if "--push-to-hub" in args:   # offline here: the folder is written, the push explains itself
            assert code == 2 and "is ready; push it later with: hf upload me/my-ranker my-ranker" in err, err
        else:
            assert code == 0, f"`{' '.join(words)}` failed:\n{err[-3000:]}"
    for output in ("my_ranked.jsonl", "my_blended.jsonl", "my-ranker/README.md", "runs/my_fuser/export/config.json"):
        assert (workdir / output).exists(), output
    assert os.path.getsize(workdir / "my_blended.jsonl") > 0

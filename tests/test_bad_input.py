"""Bad input, command by command: a one-paragraph error naming file, line and field (exit 2, no
traceback), or with --on-error skip the bad row counted and every valid row kept."""

from __future__ import annotations

import json
import os

import pytest
from helpers import make_row, write_jsonl

from blendkit import commands
from blendkit.data import DataError, load_mixinstruct

GOOD = [make_row("r1", [0.1, 0.5, 0.3]), make_row("r3", [0.2, 0.4, 0.6])]

# name -> (second line of the file, expected fragments of the error)
BAD_ROWS = {
    "malformed JSON": ('{"id": "r2", "instruction": ', ["line 2", "JSON"]),
    "missing field": ('{"id": "r2", "candidates": []}', ["line 2", "'instruction'"]),
    "ill-typed field": (json.dumps({**make_row("r2", [0.1, 0.2]), "instruction": 7}), ["line 2", "'instruction'",
                                                                                         "expected a string"]),
    "empty candidate list": (json.dumps({**make_row("r2", [0.1]), "candidates": []}), ["line 2", "'candidates'"]),
    "one candidate": (json.dumps(make_row("r2", [0.1])), ["line 2", "'candidates'"]),
    "duplicate id": (json.dumps(make_row("r1", [0.1, 0.2])), ["line 2", "'id'", "r1"]),
}
# commands that accept rows with fewer candidates (a generator adds its own; the fuser fuses one)
MIN_CANDIDATES = {"rank": 2, "fuse": 1, "generate": 0, "blend": 1}


@pytest.fixture
def models(ranker_dir, fuser_dir, tiny_llama_a) -> dict[str, str]:
    return {"ranker": ranker_dir, "fuser": fuser_dir, "llm": tiny_llama_a}


def _argv(command: str, models: dict, data: str, output: str) -> list[str]:
    common = ["--data", data, "--output", output, "--quiet"]
    return {
        "rank": ["rank", "--model", models["ranker"], *common],
        "fuse": ["fuse", "--model", models["fuser"], "--no-metrics", "--max-new-tokens", "3", *common],
        "generate": ["generate", "--models", models["llm"], "--max-new-tokens", "2", *common],
        "blend": ["blend", "--ranker", models["ranker"], "--fuser", models["fuser"], "--fuse-max-new-tokens", "3",
                  *common],
    }[command]


def _run(argv, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = commands.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _file(tmp_path, second_line: str | bytes) -> str:
    path = tmp_path / "rows.jsonl"
    first, third = (json.dumps(r).encode() for r in GOOD)
    middle = second_line if isinstance(second_line, bytes) else second_line.encode()
    path.write_bytes(first + b"\n" + middle + b"\n" + third + b"\n")
    return str(path)


@pytest.mark.parametrize("command", ["rank", "fuse", "generate", "blend"])
@pytest.mark.parametrize("case", list(BAD_ROWS) + ["non-UTF-8 bytes"])
def test_a_bad_row_is_named_or_skipped(command, case, models, tmp_path, capsys):
    if case == "non-UTF-8 bytes":
        line, expected = b'{"id": "r2", "instruction": "caf\xe9", "candidates": []}', ["line 2", "UTF-8"]
    else:
        line, expected = BAD_ROWS[case]
    valid_here = (case == "one candidate" and MIN_CANDIDATES[command] <= 1) or \
                 (case == "empty candidate list" and MIN_CANDIDATES[command] == 0)
    data = _file(tmp_path, line)
    out = tmp_path / "out.jsonl"
    code, stdout, stderr = _run(_argv(command, models, data, str(out)), capsys)
    if valid_here:
        assert code == 0, stderr
        assert [json.loads(r)["id"] for r in out.read_text().splitlines()] == ["r1", "r2", "r3"]
        return
    assert code == 2, stderr
    message = stderr.split("\n(run again")[0]
    assert message.startswith("error: ") and "rows.jsonl" in message and "Traceback" not in stderr
    for fragment in expected:
        assert fragment in message, (fragment, message)
    assert not out.exists()
    # with --on-error skip: the bad row is counted, the valid ones all come out
    code, stdout, stderr = _run(_argv(command, models, data, str(out)) + ["--on-error", "skip"], capsys)
    assert code == 0, stderr
    ids = [json.loads(r)["id"] for r in out.read_text().splitlines()]
    assert ids == ["r1", "r3"]
    assert json.loads(stdout)["skipped"] == 1
    assert "line 2" in stderr


@pytest.mark.parametrize("command", ["rank", "fuse", "generate", "blend"])
def test_files_that_are_empty_missing_or_unwritable(command, models, tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    code, _, err = _run(_argv(command, models, str(empty), str(tmp_path / "o.jsonl")), capsys)
    assert code == 2 and "empty.jsonl" in err and "empty" in err.split("empty.jsonl", 1)[1] and "Traceback" not in err
    code, _, err = _run(_argv(command, models, str(tmp_path / "nope.jsonl"), str(tmp_path / "o.jsonl")), capsys)
    assert code == 2 and "nope.jsonl" in err and "Traceback" not in err
    data = write_jsonl(tmp_path / "ok.jsonl", GOOD)
    code, _, err = _run(_argv(command, models, data, str(tmp_path / "missing" / "o.jsonl")), capsys)
    assert code == 2 and "does not exist" in err and "Traceback" not in err
    if os.geteuid() != 0:  # root may write anywhere, so a read-only directory proves nothing there
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        code, _, err = _run(_argv(command, models, data, str(locked / "o.jsonl")), capsys)
        assert code == 2 and "not writable" in err


@pytest.mark.parametrize("command", ["rank", "fuse", "generate", "blend"])
def test_a_one_megabyte_answer_is_truncated_not_fatal(command, models, tmp_path, capsys):
    huge = make_row("big", [0.3, 0.1, 0.2])
    huge["candidates"][0]["text"] = "word " * 200_000              # 1 MB
    huge["instruction"] = "explain " * 20_000
    data = write_jsonl(tmp_path / "big.jsonl", [GOOD[0], huge])
    out = tmp_path / "o.jsonl"
    code, _, err = _run(_argv(command, models, data, str(out)), capsys)
    assert code == 0, err
    rows = [json.loads(r) for r in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["r1", "big"]
    assert rows[1]["candidates"][0]["text"] == huge["candidates"][0]["text"]   # the data itself is not cut


def test_training_data_errors_name_file_line_and_field(tmp_path):
    data = _file(tmp_path, json.dumps({**make_row("r2", [0.1, 0.2]), "candidates": [
        {"model": "m", "text": "a", "scores": {"judge": "high"}},
        {"model": "n", "text": "b", "scores": {"judge": 1}}]}))
    with pytest.raises(DataError, match=r"rows.jsonl, line 2, field 'candidates\[0\].scores.judge'"):
        load_mixinstruct(data, required_scores=["judge"])
    kept = load_mixinstruct(data, required_scores=["judge"], on_error="skip")
    assert [r["id"] for r in kept.dataset] == ["r1", "r3"] and len(kept.skipped) == 1

"""infer.py blend: output format, PackLLM candidates, resume after SIGKILL, refusing a mismatched resume."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import ROOT, make_row, write_jsonl

from blendkit import commands


@pytest.fixture
def models(ranker_dir, fuser_dir) -> tuple[str, str]:
    return ranker_dir, fuser_dir


@pytest.fixture
def rows(tmp_path) -> str:
    return write_jsonl(tmp_path / "rows.jsonl", [make_row(f"r{k}", [0.1 * ((k + j) % 4) for j in range(3)])
                                                 for k in range(10)])


def _blend(data, ranker, fuser, output, *extra):
    return ["blend", "--data", data, "--ranker", ranker, "--fuser", fuser, "--output", str(output),
            "--top-k", "2", "--fuse-max-new-tokens", "6", "--batch-size", "2", "--quiet", *extra]


def test_blend_writes_ranked_selected_and_fused_rows_in_input_order(models, rows, tmp_path, capsys):
    out = tmp_path / "blend.jsonl"
    commands.dispatch(_blend(rows, *models, out))
    summary = json.loads(capsys.readouterr().out)
    written = [json.loads(line) for line in out.read_text().splitlines()]
    inputs = [json.loads(line) for line in open(rows)]
    assert [r["id"] for r in written] == [r["id"] for r in inputs]
    for row, source in zip(written, inputs):
        assert row["instruction"] == source["instruction"]
        ranks = sorted(c["rank"] for c in row["candidates"])
        assert ranks == list(range(1, len(source["candidates"]) + 1))
        best = min(row["candidates"], key=lambda c: c["rank"])
        assert row["selected"]["model"] == best["model"] and row["selected"]["text"] == best["text"]
        assert len(row["fused_from"]) == 2 and row["fused_from"][0] == best["model"]
        assert isinstance(row["fused"], str)
    assert summary["rows"] == 10 and summary["computed"] == 10 and summary["resumed_from"] == 0
    assert set(summary["stage_share"]) == {"rank", "fuse"}
    assert not os.path.exists(str(out) + ".parts")


def test_blend_with_packllm_candidates(models, tiny_llama_a, tiny_llama_b, tmp_path, capsys):
    data = write_jsonl(tmp_path / "prompts.jsonl", [{"id": "p1", "instruction": "Say hi."},
                                                   {"id": "p2", "instruction": "Name a fruit."}])
    out = tmp_path / "gen.jsonl"
    commands.dispatch(_blend(data, *models, out, "--generate-with", tiny_llama_a, tiny_llama_b, "--members-alone",
                      "--max-new-tokens", "4", "--weighting", "sim"))
    summary = json.loads(capsys.readouterr().out)
    written = [json.loads(line) for line in out.read_text().splitlines()]
    for row in written:
        names = [c["model"] for c in row["candidates"]]
        assert names == ["packllm-sim", tiny_llama_a, tiny_llama_b]
        assert sorted(c["rank"] for c in row["candidates"]) == [1, 2, 3]
    assert summary["stage_share"].keys() == {"generate", "rank", "fuse"}


_KILLER = """
import os, signal, sys
sys.argv = ["infer.py"] + sys.argv[1:]
from blendkit import commands
from blendkit.pipeline import BlendModule
step = BlendModule.predict_step
calls = []
def dying(self, batch, batch_idx=0):
    calls.append(1)
    if len(calls) == 3:   # two batches are on disk; die hard in the middle of the third
        os.kill(os.getpid(), signal.SIGKILL)
    return step(self, batch, batch_idx)
BlendModule.predict_step = dying
commands.dispatch(sys.argv[1:])
"""


@pytest.mark.slow
def test_a_killed_blend_resumes_to_the_same_file(models, rows, tmp_path):
    whole = tmp_path / "whole.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT.parent) + os.pathsep + str(ROOT)}
    args = _blend(rows, *models, whole)
    subprocess.run([sys.executable, str(ROOT / "infer.py"), *args], check=True, env=env, capture_output=True)

    out = tmp_path / "resumed.jsonl"
    args = _blend(rows, *models, out)
    killed = subprocess.run([sys.executable, "-c", _KILLER, *args], env=env, capture_output=True, cwd=ROOT)
    assert killed.returncode == -signal.SIGKILL
    assert not out.exists(), "a killed run must not leave a file that looks complete"
    shard = tmp_path / "resumed.jsonl.parts" / "shard-0.jsonl"
    assert len(shard.read_text().splitlines()) == 4          # two batches of two rows
    with open(shard, "a") as f:
        f.write('{"index": 7, "record": {"id": "torn')         # and a torn last line, as a crash mid-write leaves

    again = subprocess.run([sys.executable, str(ROOT / "infer.py"), *args], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary["resumed_from"] == 4 and summary["computed"] == 6
    assert out.read_text() == whole.read_text()
    assert not (tmp_path / "resumed.jsonl.parts").exists()


def test_a_finished_output_is_kept_unless_overwrite(models, rows, tmp_path, capsys):
    out = tmp_path / "done.jsonl"
    commands.dispatch(_blend(rows, *models, out))
    first = out.read_text()
    with pytest.raises(FileExistsError, match="--overwrite"):
        commands.dispatch(_blend(rows, *models, out))
    commands.dispatch(_blend(rows, *models, out, "--overwrite"))
    assert out.read_text() == first
    parts = tmp_path / "damaged.jsonl.parts"
    parts.mkdir()
    (parts / "shard-0.jsonl").write_text('not json\n{"index": 0, "record": {}}\n')
    from blendkit.pipeline.shards import read_shards

    with pytest.raises(ValueError, match="line 1.*damaged"):
        read_shards(str(parts))


@pytest.mark.slow
def test_repeated_kills_at_random_moments_still_give_the_same_file(models, tmp_path):
    """SIGKILL at random moments, again and again: each attempt is killed a random 0-0.1 s after it has
    written a new row (mid-batch or mid-write), then one run goes to the end. The file equals the
    uninterrupted one. Bounded: 4 killed attempts, each waiting at most 120 s for progress."""
    import random

    rows = write_jsonl(tmp_path / "rows.jsonl", [make_row(f"r{k}", [0.1 * ((k + j) % 4) for j in range(3)])
                                                 for k in range(40)])
    env = {**os.environ, "PYTHONPATH": str(ROOT.parent) + os.pathsep + str(ROOT)}
    whole = tmp_path / "whole.jsonl"
    subprocess.run([sys.executable, str(ROOT / "infer.py"), *_blend(rows, *models, whole, "--batch-size", "1")],
                   check=True, env=env, capture_output=True)
    out = tmp_path / "out.jsonl"
    shard = tmp_path / "out.jsonl.parts" / "shard-0.jsonl"
    args = [sys.executable, str(ROOT / "infer.py"), *_blend(rows, *models, out, "--batch-size", "1")]
    chooser = random.Random(7)
    killed = 0

    def lines() -> int:
        return shard.read_bytes().count(b"\n") if shard.exists() else 0

    for _ in range(4):
        before = lines()
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while proc.poll() is None and lines() <= before and time.time() < deadline:
            time.sleep(0.05)
        if proc.poll() is not None:
            break                                   # it finished before it could be killed
        time.sleep(chooser.uniform(0.0, 0.1))
        proc.kill()                                 # SIGKILL
        proc.wait()
        killed += 1 if proc.returncode == -signal.SIGKILL else 0
    if not out.exists():
        subprocess.run(args, check=True, env=env, capture_output=True)
    assert killed >= 3
    assert out.read_text() == whole.read_text()
    assert not (tmp_path / "out.jsonl.parts").exists()


def test_a_second_blend_into_the_same_output_is_refused_while_the_first_runs(models, rows, tmp_path, capsys):
    from blendkit.pipeline.runlock import RunLock

    out = tmp_path / "busy.jsonl"
    with RunLock(str(out) + ".parts", worker=False):   # what a running blend's launcher holds
        assert commands.main(_blend(rows, *models, out)) == 2
        assert f"in use by a blend that is still running (pid {os.getpid()})" in capsys.readouterr().err
        assert not out.exists() and sorted(os.listdir(str(out) + ".parts")) == ["lock"]
    assert not os.path.exists(str(out) + ".parts")   # the first run ended: nothing left behind
    commands.dispatch(_blend(rows, *models, out))
    assert len(out.read_text().splitlines()) == 10 and not os.path.exists(str(out) + ".parts")
    with pytest.raises(FileExistsError, match="--overwrite"):   # finished: refused under the lock too
        commands.dispatch(_blend(rows, *models, out))
    assert not os.path.exists(str(out) + ".parts")


def test_the_fingerprint_covers_every_file_of_a_dataset_folder(tmp_path):
    from blendkit.pipeline import fingerprint

    folder = tmp_path / "saved"
    (folder / "train").mkdir(parents=True)
    (folder / "train" / "data-00000.arrow").write_bytes(b"rows")
    (folder / "dataset_dict.json").write_text("{}")
    first = fingerprint(str(folder), {})["data_sha256"]
    assert fingerprint(str(folder), {})["data_sha256"] == first
    (folder / "train" / "data-00000.arrow").write_bytes(b"rowz")
    assert fingerprint(str(folder), {})["data_sha256"] != first
    assert fingerprint("user/some-hub-dataset", {})["data_sha256"] != fingerprint("user/other", {})["data_sha256"]
    single = folder / "dataset_dict.json"
    assert fingerprint(str(single), {})["data_sha256"] == hashlib.sha256(single.read_bytes()).hexdigest()


def test_resuming_with_other_options_is_refused(models, rows, tmp_path, capsys):
    parts = tmp_path / "o.jsonl.parts"
    parts.mkdir()
    from blendkit.pipeline import check_manifest, fingerprint

    check_manifest(str(parts), fingerprint(rows, {"top_k": 3}))
    with pytest.raises(ValueError, match="different top_k.*delete"):
        check_manifest(str(parts), fingerprint(rows, {"top_k": 2}))
    with open(rows, "a") as f:
        f.write(json.dumps(make_row("extra", [0.1, 0.2])) + "\n")
    with pytest.raises(ValueError, match="different the input data"):
        check_manifest(str(parts), fingerprint(rows, {"top_k": 3}))


@pytest.mark.slow
def test_two_processes_give_the_same_file_as_one(models, rows, tmp_path):
    """DDP on gloo with 2 CPU processes: each takes a share of the rows, the merge restores input order."""
    env = {**os.environ, "PYTHONPATH": str(ROOT.parent) + os.pathsep + str(ROOT)}
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    for out, extra in ((one, []), (two, ["--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"])):
        proc = subprocess.run([sys.executable, str(ROOT / "infer.py"), *_blend(rows, *models, out), *extra],
                              env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
    a = [json.loads(line) for line in one.read_text().splitlines()]
    b = [json.loads(line) for line in two.read_text().splitlines()]
    assert [r["id"] for r in b] == [r["id"] for r in a]          # every row once, in input order
    for x, y in zip(a, b):  # other batch compositions change float sums in the last bits only
        assert [c["rank"] for c in y["candidates"]] == [c["rank"] for c in x["candidates"]]
        assert [c["ranker_score"] for c in y["candidates"]] == pytest.approx(
            [c["ranker_score"] for c in x["candidates"]], abs=1e-5)
        assert (y["selected"]["model"], y["fused_from"]) == (x["selected"]["model"], x["fused_from"])
    assert not (tmp_path / "two.jsonl.parts").exists()
    # fewer rows left than devices: each device still gets work, and the file is complete
    single = tmp_path / "single.jsonl"
    proc = subprocess.run([sys.executable, str(ROOT / "infer.py"), *_blend(rows, *models, single), "--limit", "1",
                           "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [json.loads(line)["id"] for line in single.read_text().splitlines()] == ["r0"]

"""infer.py as users run it: output format, metrics, plot, export, and one-paragraph errors."""

import json
import os
import subprocess
import sys

import pytest
import torch
from helpers import ROOT, make_row, write_jsonl

from blendkit import commands
from blendkit.data import DataError
from blendkit.pairranker import PairRankerModel
from blendkit.pairranker.aggregation import knockout_comparisons


def test_rank_writes_one_row_per_input_with_ranks_and_metrics(ranker_dir, rows_file, tmp_path, capsys):
    out = tmp_path / "ranked.jsonl"
    commands.dispatch(["rank", "--data", rows_file, "--model", ranker_dir, "--output", str(out), "--plot",
                str(tmp_path / "plot.png"), "--quiet", "--show", "1"])
    summary = json.loads(capsys.readouterr().out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    inputs = [json.loads(line) for line in open(rows_file)]
    assert [r["id"] for r in rows] == [r["id"] for r in inputs]
    for row, source in zip(rows, inputs):
        assert row["instruction"] == source["instruction"]
        assert [c["model"] for c in row["candidates"]] == [c["model"] for c in source["candidates"]]
        assert sorted(c["rank"] for c in row["candidates"]) == list(range(1, len(source["candidates"]) + 1))
        best = min(row["candidates"], key=lambda c: c["rank"])
        assert best["ranker_score"] == max(c["ranker_score"] for c in row["candidates"])
    assert summary["rows"] == 6 and summary["output"] == str(out)
    assert set(summary["metrics"]) >= {"top1", "pair_acc", "spearman", "kendall", "oracle"}
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(out).st_mode & 0o777 == 0o666 & ~umask  # a normal file, not mkstemp's private one


def test_rank_compact_and_knockout(ranker_dir, rows_file, tmp_path, capsys):
    out = tmp_path / "ranked.jsonl"
    commands.dispatch(["rank", "--data", rows_file, "--model", ranker_dir, "--output", str(out), "--compact",
                "--aggregation", "knockout", "--quiet"])
    row = json.loads(out.read_text().splitlines()[0])
    assert set(row) == {"id", "candidates"} and set(row["candidates"][0]) == {"model", "rank", "ranker_score"}
    metrics = json.loads(capsys.readouterr().out)["metrics"]
    # 6 rows of 4 candidates: knockout compares all 6 pairs of so small a row, in both orders
    assert metrics["comparisons"] == 6 * 2 * knockout_comparisons(4) == 6 * 2 * 6
    assert "pair_acc" not in metrics and "top1" in metrics  # a knockout order is partial: top-1 only


def test_skip_option_counts_bad_rows(ranker_dir, tmp_path, capsys):
    data = write_jsonl(tmp_path / "mixed.jsonl", [make_row("a", [0.1, 0.2]), "{oops", make_row("b", [0.3, 0.1])])
    commands.dispatch(["rank", "--data", data, "--model", ranker_dir, "--output", str(tmp_path / "o.jsonl"),
                "--on-error", "skip", "--quiet"])
    captured = capsys.readouterr()
    assert json.loads(captured.out)["skipped"] == 1 and "line 2" in captured.err
    assert len((tmp_path / "o.jsonl").read_text().splitlines()) == 2


def _run(*args):
    return subprocess.run([sys.executable, str(ROOT / "infer.py"), *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)


def test_cli_errors_are_one_paragraph_without_traceback(ranker_dir, tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", [
        make_row("a", [0.1, 0.2]),
        '{"id": "b", "instruction": "q", "candidates": [{"model": "m", "text": 3}, {"model": "n", "text": ""}]}'])
    result = _run("rank", "--data", bad, "--model", ranker_dir, "--output", str(tmp_path / "o.jsonl"))
    assert result.returncode == 2
    assert "bad.jsonl, line 2, field 'candidates[0].text': expected a string, got int" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "o.jsonl").exists()

    missing_dir = _run("rank", "--data", bad, "--model", ranker_dir, "--output", str(tmp_path / "no" / "o.jsonl"))
    assert missing_dir.returncode == 2 and "does not exist" in missing_dir.stderr

    debug = _run("rank", "--data", bad, "--model", ranker_dir, "--output", str(tmp_path / "o.jsonl"), "--debug")
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_previous_output_survives_a_failed_run(ranker_dir, rows_file, tmp_path):
    out = tmp_path / "ranked.jsonl"
    out.write_text("previous results\n")
    bad = write_jsonl(tmp_path / "bad.jsonl", ["{"])
    with pytest.raises(DataError):
        commands.dispatch(["rank", "--data", bad, "--model", ranker_dir, "--output", str(out), "--quiet"])
    assert out.read_text() == "previous results\n"


def test_export_from_folder_round_trips(ranker_dir, tmp_path, capsys):
    commands.dispatch(["export", "--checkpoint", ranker_dir, "--output", str(tmp_path / "exported")])
    a = PairRankerModel.from_pretrained(ranker_dir).state_dict()
    b = PairRankerModel.from_pretrained(tmp_path / "exported").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_fuse_uses_the_ranks_of_a_ranked_file(ranker_dir, fuser_dir, rows_file, tmp_path, capsys):
    ranked = tmp_path / "ranked.jsonl"
    commands.dispatch(["rank", "--data", rows_file, "--model", ranker_dir, "--output", str(ranked), "--quiet"])
    capsys.readouterr()
    fused = tmp_path / "fused.jsonl"
    commands.dispatch(["fuse", "--data", str(ranked), "--model", fuser_dir, "--output", str(fused), "--quiet",
                "--bertscore-model", "none", "--max-new-tokens", "5"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["metrics"]["selection"] == "ranks in file"
    assert {"fused_rougeL", "selected_rougeL", "gain_rougeL", "fused_bleu"} <= set(summary["metrics"])
    fused_rows, ranked_rows = (map(json.loads, f.read_text().splitlines()) for f in (fused, ranked))
    for row, source in zip(fused_rows, ranked_rows):
        order = [c["model"] for c in sorted(source["candidates"], key=lambda c: c["rank"])]
        assert row["fused_from"] == order[:2]
        assert row["selected"]["model"] == order[0] and isinstance(row["fused"], str)
        assert [c["rank"] for c in row["candidates"]] == [c["rank"] for c in source["candidates"]]


def test_fuse_with_a_ranker_and_file_order(ranker_dir, fuser_dir, rows_file, tmp_path, capsys):
    out = tmp_path / "fused.jsonl"
    commands.dispatch(["fuse", "--data", rows_file, "--model", fuser_dir, "--ranker", ranker_dir, "--output", str(out),
                "--quiet", "--no-metrics", "--max-new-tokens", "4", "--top-k", "1"])
    summary = json.loads(capsys.readouterr().out)
    assert "metrics" not in summary and summary["rows"] == 6
    assert all(len(json.loads(line)["fused_from"]) == 1 for line in out.read_text().splitlines())
    commands.dispatch(["fuse", "--data", rows_file, "--model", fuser_dir, "--output", str(out), "--quiet",
                "--bertscore-model", "none", "--max-new-tokens", "4"])
    assert json.loads(capsys.readouterr().out)["metrics"]["selection"] == "file order"
    assert json.loads(out.read_text().splitlines()[0])["fused_from"] == ["m0", "m1"]


def test_export_writes_a_model_card_with_metadata_and_refuses_to_push_offline(ranker_dir, tmp_path, capsys,
                                                                              monkeypatch):
    import yaml

    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"top1": 7.5, "pair_acc": 66.1, "predictions": "p.jsonl"}))
    out = tmp_path / "card"
    commands.dispatch(["export", "--checkpoint", ranker_dir, "--output", str(out), "--base-model", "org/encoder",
                "--dataset", "alpacaeval-mix", "--metrics", str(metrics)])
    result = json.loads(capsys.readouterr().out)
    text = (out / "README.md").read_text()
    assert result["model_card"] == str(out / "README.md")
    meta = yaml.safe_load(text.split("---")[1])
    assert meta["base_model"] == "org/encoder" and meta["datasets"] == ["alpacaeval-mix"]
    assert meta["library_name"] == "transformers" and "pairranker" in meta["tags"]
    values = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert values == {"top1": 7.5, "pair_acc": 66.1}
    assert "Ranker.from_pretrained" in text and "| top1 | 7.5 |" in text
    # the exported folder still loads, with identical weights
    a = PairRankerModel.from_pretrained(ranker_dir).state_dict()
    b = PairRankerModel.from_pretrained(out).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(ConnectionError, match=r"HF_HUB_OFFLINE.*is ready; push it later with: hf upload me/ranker "):
        commands.dispatch(["export", "--checkpoint", ranker_dir, "--output", str(tmp_path / "p"), "--push-to-hub",
                    "me/ranker"])
    assert (tmp_path / "p" / "README.md").exists(), "the folder is ready even when the push cannot happen"
    proc = subprocess.run([sys.executable, str(ROOT / "infer.py"), "export", "--checkpoint", ranker_dir, "--output",
                           str(tmp_path / "q"), "--push-to-hub", "me/ranker"], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "HF_HUB_OFFLINE" in proc.stderr


def test_show_prints_tiny_judge_scores_readably(ranker_dir, tmp_path, capsys):
    row = make_row("tiny", [0.000123, 0.5])
    data = write_jsonl(tmp_path / "tiny.jsonl", [row])
    commands.dispatch(["rank", "--data", data, "--model", ranker_dir, "--output", str(tmp_path / "o.jsonl"),
                       "--quiet", "--show", "1"])
    err = capsys.readouterr().err
    assert "judge=0.000123" in err and "judge=0.000 " not in err

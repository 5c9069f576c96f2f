"""The benchmark's reference selections and scripts (``benchmarks/`` is not a package: put it on the path)."""

import importlib
import json
import sys

import numpy as np
import pytest
from helpers import ROOT, make_row, write_jsonl

sys.path.append(str(ROOT / "benchmarks"))   # after tests/: tests/deepspeed_cpu.py keeps its name
baselines = importlib.import_module("baselines")
compare_rankers = importlib.import_module("compare_rankers")
ranker_quality = importlib.import_module("ranker_quality")


def _cand(model: str, judge: float, chars: int = 10) -> dict:
    return {"model": model, "text": "x" * chars, "scores": {"judge": judge}}


def test_best_single_is_chosen_on_train_and_falls_back_to_the_next_best_train_model():
    train = [[_cand("good", 0.9), _cand("mid", 0.5), _cand("bad", 0.1)],
             [_cand("good", 0.8), _cand("mid", 0.6), _cand("bad", 0.4)]]
    rows = [[_cand("bad", 0.9), _cand("good", 0.1), _cand("mid", 0.5)],    # has good: rank 3
            [_cand("bad", 0.2), _cand("new", 0.9), _cand("mid", 0.4)]]     # no good: mid, rank 2
    selection = baselines.best_single(train, rows, "judge")
    assert list(selection.judge_rank) == [3.0, 2.0]
    assert list(selection.top1) == pytest.approx([10.0, 40.0])
    assert selection.details["model"] == "good" and selection.details["fallback_rows"] == 1


def test_random_is_the_exact_expectation_of_a_uniform_pick():
    rows = [[_cand("a", 0.5), _cand("b", 0.2), _cand("c", 0.2)], [_cand("a", 0.1), _cand("b", 0.3)]]
    selection = baselines.random_pick(rows, "judge")
    assert list(selection.judge_rank) == [2.0, 1.5]
    assert list(selection.top1) == pytest.approx([30.0, 20.0])


def test_oracle_and_longest_pick_what_they_say():
    rows = [[_cand("a", 0.2, chars=50), _cand("b", 0.7, chars=5), _cand("c", 0.4, chars=20)]]
    assert list(baselines.oracle(rows, "judge").judge_rank) == [1.0]
    longest = baselines.longest(rows, "judge")
    assert list(longest.judge_rank) == [3.0]
    assert longest.pair_acc == pytest.approx(0.0)   # longer is worse in all 3 pairs


def test_prior_length_fits_the_length_weight_on_train_when_length_decides():
    # Equal model priors (each model wins when its answer is the longer): only length can decide.
    train = [[_cand("a", 0.9, chars=400), _cand("b", 0.1, chars=20)],
             [_cand("a", 0.1, chars=20), _cand("b", 0.9, chars=400)]]
    rows = [[_cand("a", 0.2, chars=30), _cand("b", 0.6, chars=300)]]
    selection = baselines.prior_length(train, rows, "judge")
    assert selection.details == {"a": 0.25, "train_judge_rank": 1.0}   # the smallest a that reaches the best
    assert list(selection.judge_rank) == [1.0]


def test_prior_length_keeps_the_prior_alone_when_the_best_model_writes_short_answers():
    train = [[_cand("good", 0.9, chars=20), _cand("verbose", 0.1, chars=400)],
             [_cand("good", 0.8, chars=30), _cand("verbose", 0.3, chars=500)]]
    rows = [[_cand("verbose", 0.2, chars=600), _cand("good", 0.7, chars=10)]]
    selection = baselines.prior_length(train, rows, "judge")
    assert selection.details["a"] == 0.0
    assert list(selection.judge_rank) == [1.0]


def test_ranker_picks_refuse_predictions_made_on_other_candidates():
    rows = [[_cand("a", 0.5), _cand("b", 0.2)]]
    good = [{"id": "r", "candidates": [{"model": "a", "rank": 2}, {"model": "b", "rank": 1}]}]
    assert baselines.ranker_picks(rows, good, "p.jsonl") == [1]
    other_pool = [{"id": "r", "candidates": [{"model": "a", "rank": 1}, {"model": "z", "rank": 2}]}]
    with pytest.raises(ValueError, match="same --eval and --pool"):
        baselines.ranker_picks(rows, other_pool, "p.jsonl")


def _predictions(path, rows: list[dict], pick_best: bool) -> str:
    """Predictions that rank each row by its judge score (best first) or in reverse."""
    lines = []
    for row in rows:
        scores = [c["scores"]["judge"] for c in row["candidates"]]
        order = sorted(range(len(scores)), key=lambda k: -scores[k] if pick_best else scores[k])
        ranks = {k: position for position, k in enumerate(order, start=1)}
        lines.append({"id": row["id"], "candidates": [{"model": c["model"], "rank": ranks[k], "ranker_score": 0.0}
                                                      for k, c in enumerate(row["candidates"])]})
    return write_jsonl(path, lines)


@pytest.fixture
def files(tmp_path):
    eval_rows = [make_row(f"e{k}", [0.1 * k + 0.05, 0.5, 0.9 - 0.1 * k], instruction=f"Eval question {k}?")
                 for k in range(4)]
    train_rows = [make_row(f"t{k}", [0.2, 0.5, 0.8 - 0.05 * k], instruction=f"Train question {k}?") for k in range(4)]
    return {"eval": write_jsonl(tmp_path / "eval.jsonl", eval_rows), "train": write_jsonl(tmp_path / "train.jsonl",
            train_rows), "rows": eval_rows, "tmp": tmp_path}


def test_compare_rankers_finds_the_better_ranker_beyond_noise(files, capsys):
    best = _predictions(files["tmp"] / "best.jsonl", files["rows"], pick_best=True)
    worst = _predictions(files["tmp"] / "worst.jsonl", files["rows"], pick_best=False)
    common = ["--eval", files["eval"], "--train", files["train"], "--pool", "all", "--resamples", "500"]
    compare_rankers.main([best, worst, *common])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["a_judge_rank"] == 1.0 and summary["b_judge_rank"] == 3.0
    assert summary["judge_rank_difference_95"] == [-2.0, -2.0] and summary["p_a_better"] == 1.0
    compare_rankers.main([best, *common, "--against", "oracle"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["judge_rank_difference"] == 0.0 and summary["p_a_better"] == 0.5


def test_ranker_quality_baselines_only_and_cv_measure_every_row(files, capsys):
    common = ["--eval", files["eval"], "--train", files["train"], "--pool", "all", "--baselines-only",
              "--resamples", "200"]
    ranker_quality.main(["--output", str(files["tmp"] / "val"), *common])
    report = json.loads((files["tmp"] / "val" / "metrics.json").read_text())
    assert set(report["baselines"]) == {"oracle", "best_single", "prior_length", "longest", "random"}
    assert report["baselines"]["random"]["judge_rank"] == 2.0 and report["baselines"]["oracle"]["judge_rank"] == 1.0
    assert "| best_single |" in capsys.readouterr().out
    ranker_quality.main(["--output", str(files["tmp"] / "cv"), "--cv", "2", *common])
    report = json.loads((files["tmp"] / "cv" / "metrics.json").read_text())
    assert report["rows"] == 8 and sum(fold["eval_rows"] for fold in report["folds"]) == 8
    assert report["baselines"]["oracle"]["rows"] == 8


def test_instruction_folds_are_stable_and_in_range():
    folds = [ranker_quality.instruction_fold(f"instruction {k}", 5) for k in range(200)]
    assert set(folds) == {0, 1, 2, 3, 4}
    assert folds == [ranker_quality.instruction_fold(f"instruction {k}", 5) for k in range(200)]
    assert np.bincount(folds).min() > 20

import pytest
from helpers import write_jsonl

from blendkit.pipeline import blend_quality


def _blended(row_id: str, judge: list[float | None], first: int) -> dict:
    """A blend output row whose candidate ``first`` is ranked first (None: a generated, unscored candidate)."""
    candidates = [{"model": f"m{k}", "text": f"answer {k}", "scores": {} if s is None else {"judge": s},
                   "rank": 1 if k == first else 2 + k} for k, s in enumerate(judge)]
    return {"id": row_id, "instruction": "q", "candidates": candidates, "selected": candidates[first]}


def test_blend_quality_reports_top1_oracle_and_judge_rank_like_rank(tmp_path):
    path = write_jsonl(tmp_path / "blended.jsonl", [
        _blended("tie", [0.5, 0.2, 0.2, 0.1], first=2),         # judge rank 2.5 (tied), top1 20, oracle 50
        _blended("generated-first", [0.4, None, 0.9], first=1),  # the pick has no score: not counted
        _blended("beside-generated", [0.3, 0.6, None], first=0),  # rank 2 among the two scored, top1 30, oracle 60
    ])
    quality = blend_quality(path)
    assert quality["top1"] == pytest.approx(25.0)
    assert quality["oracle"] == pytest.approx(55.0)
    assert quality["judge_rank"] == pytest.approx(2.25)
    assert quality["rows_scored"] == 2
    assert "selected_judge" not in quality   # one name per quantity: `blendkit rank` calls it top1


def test_blend_quality_is_empty_without_scores(tmp_path):
    path = write_jsonl(tmp_path / "blended.jsonl", [_blended("r", [None, None], first=0)])
    assert blend_quality(path) == {}

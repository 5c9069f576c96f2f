"""Blend quality read back from a finished blend file, where its rows allow it."""

from __future__ import annotations

import json

from ..genfuser.metrics import FusionMetrics
from ..pairranker.metrics import judge_rank


def blend_quality(path: str, score_key: str = "judge") -> dict:
    """Metrics of a finished blend file, where the rows allow them. Over the rows whose selected
    candidate has a ``score_key`` score, with the names and units of ``blendkit rank``: ``top1`` (the
    selected candidate's score ×100), ``oracle`` (the best scored candidate's ×100) and ``judge_rank``
    (the selected candidate's rank among the row's scored candidates, 1 = best, ties share the mean
    rank). Then BLEU / ROUGE-L of the fused and the selected answer against the reference ``output``."""
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    out: dict = {}
    picks = []   # (selected score, best score, selected rank)
    for row in rows:
        if "selected" not in row:
            continue
        scored = [c for c in row["candidates"] if c["scores"].get(score_key) is not None]
        chosen = next((k for k, c in enumerate(scored) if c["rank"] == 1), None)
        if chosen is not None:
            scores = [c["scores"][score_key] for c in scored]
            picks.append((scores[chosen], max(scores), float(judge_rank(scores, chosen))))
    if picks:
        out["top1"] = round(100 * sum(p[0] for p in picks) / len(picks), 3)
        out["oracle"] = round(100 * sum(p[1] for p in picks) / len(picks), 3)
        out["judge_rank"] = round(sum(p[2] for p in picks) / len(picks), 3)
        out["rows_scored"] = len(picks)
    fused = [r for r in rows if r.get("fused") is not None and r.get("output")]
    if fused:
        metrics = FusionMetrics(bertscore_model=None)
        metrics.update([r["fused"] for r in fused], [r["selected"]["text"] for r in fused],
                       [r["output"] for r in fused])
        out.update({k: round(v, 3) for k, v in metrics.compute().items()})
    return out

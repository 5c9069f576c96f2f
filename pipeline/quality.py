"""Blend quality read back from a finished blend file, where its rows allow it."""

from __future__ import annotations

import json

from ..genfuser.metrics import FusionMetrics


def blend_quality(path: str, score_key: str = "judge") -> dict:
    """Metrics of a finished blend file, where the rows allow them: the mean score of the selected
    candidate (rows whose pick has a score) against the best available, and BLEU / ROUGE-L of the fused
    and the selected answer against the reference ``output``."""
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    out: dict = {}
    scored = [r for r in rows
              if "selected" in r and any(c["scores"].get(score_key) is not None for c in r["candidates"])]
    picks = []
    for row in scored:
        chosen = next(c for c in row["candidates"] if c["rank"] == 1)
        if chosen["scores"].get(score_key) is not None:
            picks.append((chosen["scores"][score_key],
                          max(c["scores"][score_key] for c in row["candidates"]
                              if c["scores"].get(score_key) is not None)))
    if picks:
        out[f"selected_{score_key}"] = round(100 * sum(p for p, _ in picks) / len(picks), 3)
        out[f"oracle_{score_key}"] = round(100 * sum(b for _, b in picks) / len(picks), 3)
        out["rows_scored"] = len(picks)
    fused = [r for r in rows if r.get("fused") is not None and r.get("output")]
    if fused:
        metrics = FusionMetrics(bertscore_model=None)
        metrics.update([r["fused"] for r in fused], [r["selected"]["text"] for r in fused],
                       [r["output"] for r in fused])
        out.update({k: round(v, 3) for k, v in metrics.compute().items()})
    return out

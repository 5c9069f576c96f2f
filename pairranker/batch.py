"""Rank every row of a MixInstruct dataset and (when it has scores) measure the ranking.

Shared by ``blendkit rank`` and ``benchmarks/ranker_quality.py``: one code path from file to
output records and metrics. (The benchmark's reference selections live in ``benchmarks/baselines.py``.)
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ..data import ROW_FIELDS, LoadResult, ScoreSpec, candidate_record
from .inference import Ranker, RankResult
from .metrics import RankingMetrics


def rank_dataset(
    ranker: Ranker,
    data: LoadResult,
    aggregation: str = "max_logits",
    score_spec: ScoreSpec | None = None,
    rows_per_batch: int = 8,
    progress: bool = True,
    return_matrix: bool = False,
) -> tuple[list[dict], dict[str, float] | None, list[RankResult]]:
    """Returns (output records, metrics or None, raw RankResults).

    Each record is the input row plus, per candidate, ``rank`` (1 = best) and ``ranker_score``.
    Metrics are computed when every candidate carries ``score_spec``'s keys.
    """
    ds = data.dataset
    has_scores = score_spec is not None and all(
        all(c["scores"].get(k) is not None for k in score_spec.keys) for cands in ds["candidates"] for c in cands)
    metrics = RankingMetrics(score_spec.keys, full_order=aggregation != "knockout") if has_scores else None
    records, results = [], []
    bar = tqdm(total=len(ds), desc=f"ranking ({aggregation})", unit="row", disable=not progress)
    for start in range(0, len(ds), rows_per_batch):
        chunk = ds[start:start + rows_per_batch]
        rows = ranker.encode(chunk["instruction"], [[c["text"] for c in cands] for cands in chunk["candidates"]],
                             chunk["input"], models=[[c["model"] for c in cands] for cands in chunk["candidates"]])
        chunk_results = ranker.rank_encoded(rows, aggregation, ids=chunk["id"],
                                            return_matrix=return_matrix or metrics is not None)
        for k, result in enumerate(chunk_results):
            candidates = chunk["candidates"][k]
            record = {name: chunk[name][k] for name in ROW_FIELDS}
            record["candidates"] = [
                {**candidate_record(cand), "rank": rank, "ranker_score": float(score)}
                for cand, rank, score in zip(candidates, result.ranks, result.scores)]
            records.append(record)
            if metrics is not None:
                target = torch.from_numpy(score_spec.combine(candidates))
                raw = torch.tensor([[c["scores"][key] for key in score_spec.keys] for c in candidates],
                                   dtype=torch.float64)   # 10-decimal judge scores stay distinct
                matrix = torch.tensor(result.matrix) if result.matrix is not None else None
                metrics.update(torch.tensor(result.scores), target, raw, matrix)
        results.extend(chunk_results)
        bar.update(len(chunk_results))
    bar.close()
    values = None
    if metrics is not None:
        values = {name: round(float(v), 4) for name, v in metrics.compute().items()}
        values["comparisons"] = int(sum(r.comparisons for r in results))
    return records, values, results

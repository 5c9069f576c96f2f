"""Fuse every row of a MixInstruct dataset; measure the fusion when rows carry references.

Shared by ``blendkit fuse`` and ``benchmarks/fuser_quality.py``. Which candidates are fused, best
first: ranked here by ``ranker`` if given, else by the ``rank`` fields a ranked file carries
(``infer.py rank`` output), else in the order the row lists them.
"""

from __future__ import annotations

from tqdm.auto import tqdm

from ..data import ROW_FIELDS, LoadResult, candidate_record
from .inference import Fuser
from .metrics import FusionMetrics


def selection_source(data: LoadResult, ranker) -> str:
    if ranker is not None:
        return "ranker"
    if all(c.get("rank") is not None for cands in data.dataset["candidates"] for c in cands):
        return "ranks in file"
    return "file order"


def fuse_dataset(fuser: Fuser, data: LoadResult, ranker=None, top_k: int | None = None, rows_per_batch: int = 16,
                 metrics: FusionMetrics | None = None, progress: bool = True,
                 **generate_kwargs) -> tuple[list[dict], dict[str, float] | None]:
    """Returns (records, metrics). Each record is the input row plus ``fused`` (text),
    ``fused_from`` (models, best first) and ``selected`` (the top-1 candidate's model and text)."""
    ds = data.dataset
    source = selection_source(data, ranker)
    records, fused_inputs = [], []
    bar = tqdm(total=len(ds), desc="fusing", unit="row", disable=not progress)
    for start in range(0, len(ds), rows_per_batch):
        chunk = ds[start:start + rows_per_batch]
        texts = [[c["text"] for c in cands] for cands in chunk["candidates"]]
        ranks = [[c["rank"] for c in cands] for cands in chunk["candidates"]] if source == "ranks in file" else None
        results = fuser.fuse(chunk["instruction"], texts, top_k=top_k, ranks=ranks, ranker=ranker,
                             inputs=chunk["input"], ids=chunk["id"], **generate_kwargs)
        for k, result in enumerate(results):
            cands = chunk["candidates"][k]
            record = {name: chunk[name][k] for name in ROW_FIELDS}
            record["candidates"] = [candidate_record(c) for c in cands]
            record["selected"] = {"model": cands[result.fused_from[0]]["model"],
                                  "text": cands[result.fused_from[0]]["text"]}
            record["fused_from"] = [cands[i]["model"] for i in result.fused_from]
            record["fused"] = result.fused
            records.append(record)
            fused_inputs.append([cands[i]["text"] for i in result.fused_from])
        bar.update(len(results))
    bar.close()
    values = None
    if metrics is not None and all(r["output"] for r in records):
        metrics.update([r["fused"] for r in records], [r["selected"]["text"] for r in records],
                       [r["output"] for r in records], candidates=fused_inputs)
        values = {name: round(v, 3) for name, v in metrics.compute().items()}
        values["selection"] = source
    return records, values

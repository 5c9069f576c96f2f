"""The per-row blend as a Lightning predict step: (generate) → rank → fuse.

Per row: optional extra candidates from a PackLLM generator (the fused answer, and/or each member
alone), a PairRanker ranking of all candidates, and a GenFuser answer from the top-K. How rows are
spread over devices, written, resumed and merged is ``pipeline/run.py``'s business.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import pytorch_lightning as pl
from torch import nn

from ..data import ROW_FIELDS, candidate_record
from .candidates import add_generated_candidates


@dataclass
class BlendOptions:
    top_k: int | None = None                  # candidates fused (default: the fuser's)
    aggregation: str = "max_logits"
    generate_fused: bool = True               # with a generator: add its fused answer
    generate_members: bool = False            # with a generator: add each member's own answer
    generate: dict = field(default_factory=dict)   # PackLLMGenerator.generate options
    fuse: dict = field(default_factory=dict)       # Fuser.fuse generate options

    def to_dict(self) -> dict:
        return asdict(self)


class BlendModule(pl.LightningModule):
    """The per-row pipeline as a predict step; the models are submodules, so Lightning places them."""

    def __init__(self, ranker, fuser=None, generator=None, options: BlendOptions | None = None):
        super().__init__()
        self.ranker, self.fuser, self.generator = ranker, fuser, generator
        self.options = options or BlendOptions()
        self.models = nn.ModuleList([ranker.model] + ([fuser.model] if fuser else [])
                                    + ([m.model for m in generator.members] if generator else []))
        self.seconds = {"generate": 0.0, "rank": 0.0, "fuse": 0.0}

    def on_predict_start(self) -> None:
        for member in (self.generator.members if self.generator else []):
            if member.vocab_map is not None:
                member.vocab_map.to(self.device)

    def predict_step(self, batch: list[tuple[int, dict]], batch_idx: int = 0) -> list[tuple[int, dict]]:
        indices = [i for i, _ in batch]
        rows = [dict(row, candidates=[candidate_record(c) for c in row["candidates"]]) for _, row in batch]
        if self.generator is not None:
            self._generate(rows)
        start = time.perf_counter()
        instructions, inputs = [r["instruction"] for r in rows], [r["input"] for r in rows]
        texts = [[c["text"] for c in r["candidates"]] for r in rows]
        # A ranker with a model prior also weighs each candidate's source model (generated ones are unknown: 0).
        models = [[c["model"] for c in r["candidates"]] for r in rows] if self.ranker.uses_model_prior else None
        results = self.ranker.rank(instructions, texts, aggregation=self.options.aggregation, inputs=inputs,
                                   ids=[r["id"] for r in rows], models=models)
        self.seconds["rank"] += time.perf_counter() - start
        for row, result in zip(rows, results):
            for cand, rank, score in zip(row["candidates"], result.ranks, result.scores):
                cand["rank"], cand["ranker_score"] = rank, float(score)
            best = row["candidates"][result.best]
            row["selected"] = {"model": best["model"], "text": best["text"], "ranker_score": best["ranker_score"]}
        if self.fuser is not None:
            start = time.perf_counter()
            fused = self.fuser.fuse(instructions, texts, top_k=self.options.top_k, ranks=[res.ranks for res in results],
                                    inputs=inputs, **self.options.fuse)
            self.seconds["fuse"] += time.perf_counter() - start
            for row, result in zip(rows, fused):
                row["fused_from"] = [row["candidates"][i]["model"] for i in result.fused_from]
                row["fused"] = result.fused
        return list(zip(indices, [_output_record(r) for r in rows]))

    def _generate(self, rows: list[dict]) -> None:
        start = time.perf_counter()
        add_generated_candidates(rows, self.generator, fused=self.options.generate_fused,
                                 members_alone=self.options.generate_members, **self.options.generate)
        self.seconds["generate"] += time.perf_counter() - start


def _output_record(row: dict) -> dict:
    record = {name: row[name] for name in ROW_FIELDS}
    record["candidates"] = row["candidates"]
    for name in ("selected", "fused_from", "fused"):
        if name in row:
            record[name] = row[name]
    return record

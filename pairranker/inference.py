"""Ranker: the small inference API over a trained PairRankerModel.

    >>> ranker = Ranker.from_pretrained("runs/ranker/export")                   # doctest: +SKIP
    >>> ranker.compare("Name a prime.", "7", "8")                               # P("7" is better)
    >>> [r.ranks for r in ranker.rank(["Name a prime."], [["7", "8", "9"]])]    # 1 = best
    >>> ranker.best_of_n(["Name a prime."], [["7", "8", "9"]])                  # ["7"]
    >>> ranker.rank("Name a prime.", ["7", "8"], models=["vicuna-13b", "alpaca-7b"])  # doctest: +SKIP

A ranker trained with a model prior (``use_model_prior``) adds each source model's learned offset
when ``models`` (``model_a``/``model_b``) are given; unknown models, or none given, add 0. A
text-only ranker ignores them.

Every comparison is run in both orders and the two logits averaged, cancelling the encoder's
position bias. Pairs from all rows are sorted by length before batching, so a batch holds
sequences of similar length and padding is small.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from tqdm.auto import tqdm
from transformers import AutoTokenizer

from ..core.offline import load_error
from ..core.text import source_text
from .aggregation import AGGREGATIONS, knockout, max_logits, max_wins, ranks_from_scores
from .encoding import EncodedRow, PairEncoder
from .model import PairRankerModel


@dataclass
class RankResult:
    """The ranking of one row's candidates. Lists are in the candidates' input order."""

    id: str | None
    ranks: list[int]                 # 1 = best
    scores: list[float]              # aggregated ranker score (higher is better)
    aggregation: str
    comparisons: int                 # encoder forward passes spent on this row
    matrix: list[list[float]] | None = field(default=None, repr=False)  # M[i][j] logit, full-matrix modes

    @property
    def best(self) -> int:
        return self.ranks.index(1)

    @property
    def order(self) -> list[int]:
        """Candidate indices, best first."""
        return sorted(range(len(self.ranks)), key=self.ranks.__getitem__)


class Ranker:
    def __init__(self, model: PairRankerModel, tokenizer, batch_size: int = 32,
                 device: str | torch.device | None = None, bucket_by_length: bool = True):
        self.model = model
        self.bucket_by_length = bucket_by_length
        self.encoder = PairEncoder(tokenizer, model.config)
        self.batch_size = batch_size + batch_size % 2  # even: both orders of a pair share a batch
        if device is not None:
            self.model.to(device)

    @classmethod
    def from_pretrained(cls, path: str, device: str | None = None, dtype: torch.dtype | None = None,
                        batch_size: int = 32) -> "Ranker":
        """Load a ranker saved with ``save_pretrained`` (or exported by ``infer.py export``); safetensors only."""
        try:
            model = PairRankerModel.from_pretrained(path, use_safetensors=True, **({"dtype": dtype} if dtype else {}))
            tokenizer = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as error:
            raise load_error("ranker", path, error, "the output of infer.py export") from None
        model.eval()
        return cls(model, tokenizer, batch_size=batch_size, device=device)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def uses_model_prior(self) -> bool:
        """Whether source-model names change this ranker's scores."""
        return bool(self.model.config.use_model_prior)

    # ----------------------------------------------------------------------------------------- #
    def pair_logits(self, rows: Sequence[EncodedRow], pairs: Sequence[tuple[int, int, int]],
                    progress: bool = False) -> torch.Tensor:
        """Raw logits for (row, i, j) = "candidate i beats j" in that order, batched by length."""
        if not pairs:
            return torch.zeros(0)
        features = [self.encoder.pair(rows[r], i, j) for r, i, j in pairs]
        order = list(range(len(features)))
        if self.bucket_by_length:
            order.sort(key=lambda k: len(features[k]["input_ids"]))
        logits = torch.empty(len(features))
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                bar = tqdm(total=len(order), desc="comparisons", unit="pair", disable=not progress, leave=False)
                for start in range(0, len(order), self.batch_size):
                    chunk = order[start:start + self.batch_size]
                    batch = self.encoder.collate([features[k] for k in chunk])
                    batch = {name: t.to(self.device) for name, t in batch.items()}
                    logits[chunk] = self.model(**batch).logits.float().cpu()
                    bar.update(len(chunk))
                bar.close()
        finally:
            self.model.train(was_training)
        return logits

    def symmetric_logits(self, rows: Sequence[EncodedRow], pairs: Sequence[tuple[int, int, int]],
                         progress: bool = False) -> torch.Tensor:
        """(logit(i, j) - logit(j, i)) / 2 for each (row, i, j).

        The two orders are interleaved and have equal length, so the stable length sort keeps them
        adjacent and (batch sizes being even) in the same batch.
        """
        both = [order for r, i, j in pairs for order in ((r, i, j), (r, j, i))]
        logits = self.pair_logits(rows, both, progress)
        return (logits[0::2] - logits[1::2]) / 2

    def encode(self, instructions: Sequence[str], candidates: Sequence[Sequence[str]],
               inputs: Sequence[str] | None = None,
               models: Sequence[Sequence[str | None] | None] | None = None) -> list[EncodedRow]:
        """Tokenize rows; ``models`` (each row's candidate source models) reach a ranker's model prior."""
        inputs = inputs or [""] * len(instructions)
        if models is not None and len(models) != len(candidates):
            raise ValueError(f"got {len(models)} model lists for {len(candidates)} candidate lists")
        return self.encoder.encode_rows([source_text(q, x) for q, x in zip(instructions, inputs)], candidates,
                                        models)

    # ----------------------------------------------------------------------------------------- #
    def compare(self, instruction: str, a: str, b: str, input: str = "", model_a: str | None = None,
                model_b: str | None = None) -> float:
        """P(answer ``a`` is better than ``b``) for one instruction, averaged over both orders.
        ``model_a``/``model_b``: the answers' source models (used by a ranker with a model prior)."""
        rows = self.encode([instruction], [[a, b]], [input], [[model_a, model_b]])
        return torch.sigmoid(self.symmetric_logits(rows, [(0, 0, 1)])).item()

    def rank(
        self,
        instructions: Sequence[str] | str,
        candidates: Sequence[Sequence[str]] | Sequence[str],
        aggregation: str = "max_logits",
        inputs: Sequence[str] | None = None,
        ids: Sequence[str] | None = None,
        progress: bool = False,
        return_matrix: bool = False,
        models: Sequence[Sequence[str | None]] | Sequence[str | None] | None = None,
    ) -> list[RankResult]:
        """Rank each row's candidates. A single instruction with a flat list of candidates is accepted too.

        ``aggregation``: ``max_logits`` or ``max_wins`` (full matrix, N·(N-1) forward passes per row),
        or ``knockout`` (2·(N-1) forward passes; reliable top-1 only).
        ``models``: each candidate's source model, shaped like ``candidates`` (a ranker with a model
        prior adds their offsets; unknown names add 0).
        """
        if isinstance(instructions, str):
            instructions, candidates = [instructions], [candidates]  # type: ignore[list-item]
            inputs = [inputs] if isinstance(inputs, str) else inputs
            models = [models] if models is not None else None  # type: ignore[list-item]
        if len(instructions) != len(candidates):
            raise ValueError(f"got {len(instructions)} instructions but {len(candidates)} candidate lists")
        for k, texts in enumerate(candidates):
            if len(texts) < 1:
                raise ValueError(f"row {k} ({ids[k] if ids else 'no id'}) has no candidates to rank")
        rows = self.encode(instructions, candidates, inputs, models)
        return self.rank_encoded(rows, aggregation, ids, progress, return_matrix)

    def rank_encoded(self, rows: Sequence[EncodedRow], aggregation: str = "max_logits",
                     ids: Sequence[str] | None = None, progress: bool = False,
                     return_matrix: bool = False) -> list[RankResult]:
        """:meth:`rank` for rows already tokenized by ``self.encoder`` (the training loop uses this)."""
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        sizes = [len(row.candidates) for row in rows]
        ids = list(ids) if ids is not None else [None] * len(rows)

        if aggregation == "knockout":
            rounds = knockout(sizes, lambda triples: self.symmetric_logits(rows, triples))
            return [RankResult(ids[r], ranks_from_scores(s), s.tolist(), aggregation, 2 * (sizes[r] - 1))
                    for r, s in enumerate(rounds)]

        pairs = [(r, i, j) for r, n in enumerate(sizes) for i in range(n) for j in range(i + 1, n)]
        logits = self.symmetric_logits(rows, pairs, progress)
        matrices = [torch.zeros(n, n) for n in sizes]
        for (r, i, j), logit in zip(pairs, logits.tolist()):
            matrices[r][i, j], matrices[r][j, i] = logit, -logit
        aggregate = max_logits if aggregation == "max_logits" else max_wins
        results = []
        for r, matrix in enumerate(matrices):
            scores = aggregate(matrix)
            results.append(RankResult(ids[r], ranks_from_scores(scores), scores.tolist(), aggregation,
                                      sizes[r] * (sizes[r] - 1), matrix.tolist() if return_matrix else None))
        return results

    def best_of_n(self, instructions: Sequence[str] | str, candidates: Sequence[Sequence[str]] | Sequence[str],
                  aggregation: str = "knockout", inputs: Sequence[str] | None = None,
                  models: Sequence[Sequence[str | None]] | Sequence[str | None] | None = None) -> list[str] | str:
        """The best candidate text per row (knockout by default: 2·(N-1) passes per row)."""
        single = isinstance(instructions, str)
        results = self.rank(instructions, candidates, aggregation=aggregation, inputs=inputs, models=models)
        lists = [candidates] if single else candidates
        best = [texts[result.best] for texts, result in zip(lists, results)]
        return best[0] if single else best

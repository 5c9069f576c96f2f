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

``precision`` trades exactness for speed. ``"fp32"`` runs the model as loaded, with no autocast: exactly
the eager model's logits. ``"bf16"`` runs a bf16 copy of the encoder (pooling, head and model prior stay
fp32); ``"bf16-autocast"`` keeps the fp32 weights and runs the encoder's matrix products under bf16
autocast (slower: every activation is cast to and fro, but no copy is made). ``"auto"`` (the default)
is ``"bf16"`` where the hardware multiplies bf16 natively (AMX / AVX512-BF16 CPUs, bf16 GPUs; see
``blendkit.core.hardware``) and ``"fp32"`` elsewhere, where bf16 would be emulated, slower and less exact.
bf16 moves the order-averaged logits by a few hundredths at most (``BF16_LOGIT_TOLERANCE``) and rarely
changes a ranking; ``benchmarks/ranker_speed.py`` measures speed and agreement side by side.
"""

from __future__ import annotations

import contextlib
import copy
import weakref
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoTokenizer
from transformers.modeling_outputs import BaseModelOutput

from ..core.hardware import fast_bf16
from ..core.offline import load_error
from ..core.text import source_text
from .aggregation import AGGREGATIONS, knockout, knockout_comparisons, max_logits, max_wins, ranks_from_scores
from .encoding import EncodedRow, PairEncoder
from .model import PairRankerModel

PRECISIONS = ("auto", "fp32", "bf16", "bf16-autocast")
# How far a bf16 run's logits may be from the fp32 model's: |Δ| <= atol + rtol * |fp32 logit|, per pair and order.
# Measured by benchmarks/ranker_speed.py (trained MiniLM ranker, val rows) and held by tests/pairranker.
BF16_LOGIT_TOLERANCE = {"atol": 0.05, "rtol": 0.02}
# model -> (its weights key, its twin with a bf16 encoder); see Ranker._bf16_twin.
_BF16_TWINS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


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
    """Ranks candidates with a :class:`PairRankerModel`.

    Args:
        batch_size: pair sequences per forward pass (rounded up to even). 16 is the fastest measured on a
            2-core CPU in bf16 and fp32 alike: bigger batches spill the activations out of the CPU caches.
        device: where to move the model (default: leave it where it is).
        bucket_by_length: sort pairs by length before batching (less padding; results are unchanged).
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"bf16-autocast"`` (see the module docstring).
            ``"fp32"`` runs the model in the dtype it was loaded in, with no autocast; a model loaded in
            bf16 runs as it is under every setting.
    """

    def __init__(self, model: PairRankerModel, tokenizer, batch_size: int = 16,
                 device: str | torch.device | None = None, bucket_by_length: bool = True, precision: str = "auto"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.model = model
        self.bucket_by_length = bucket_by_length
        self.precision = precision
        self.encoder = PairEncoder(tokenizer, model.config)
        self.batch_size = batch_size + batch_size % 2  # even: both orders of a pair share a batch
        if device is not None:
            self.model.to(device)

    @classmethod
    def from_pretrained(cls, path: str, device: str | None = None, dtype: torch.dtype | None = None,
                        batch_size: int = 16, precision: str = "auto") -> "Ranker":
        """Load a ranker saved with ``save_pretrained`` (or exported by ``infer.py export``); safetensors only."""
        try:
            model = PairRankerModel.from_pretrained(path, use_safetensors=True, **({"dtype": dtype} if dtype else {}))
            tokenizer = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as error:
            raise load_error("ranker", path, error, "the output of infer.py export") from None
        model.eval()
        return cls(model, tokenizer, batch_size=batch_size, device=device, precision=precision)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def compute_precision(self) -> str:
        """The precision forward passes run in now: ``precision`` with ``"auto"`` resolved for the model's
        device (checked at each call, since the model may have moved)."""
        if self.precision == "auto":
            return "bf16" if fast_bf16(self.device) else "fp32"
        return self.precision

    def _forward_model(self) -> nn.Module:
        """The module to run for :attr:`compute_precision`: the model itself for fp32, else a twin of it whose
        encoder computes in bf16 and hands fp32 hidden states to the (shared, fp32) pooling, head and prior,
        where the logits are formed."""
        precision = self.compute_precision
        if precision == "fp32" or self.model.dtype == torch.bfloat16:
            return self.model                  # as loaded (a bf16 model already computes in bf16)
        if precision == "bf16" and not _is_partitioned(self.model):
            return self._bf16_twin()
        device_type = self.device.type
        if not torch.amp.is_autocast_available(device_type):
            raise ValueError(f"precision={self.precision!r}: no bf16 autocast on {device_type!r}; use precision='fp32'")
        return _with_encoder(self.model, _Float32Output(self.model.encoder, autocast=device_type))

    def _bf16_twin(self) -> PairRankerModel:
        """A twin of the model whose encoder is a bf16 copy, rebuilt whenever the model's weights change.

        Autocast would cast activations into and out of bf16 around every matrix product; a bf16 encoder
        does not. The copy is kept per model, not per Ranker, so a training loop that makes a Ranker for
        each validation batch copies the encoder once per validation, not once per batch.
        """
        key = _weights_key(self.model)
        cached = _BF16_TWINS.get(self.model)
        if cached is not None and cached[0] == key:
            return cached[1]
        _BF16_TWINS.pop(self.model, None)                      # drop the old copy before making the new one
        encoder = copy.deepcopy(self.model.encoder).requires_grad_(False).to(torch.bfloat16)
        encoder.zero_grad(set_to_none=True)
        twin = _with_encoder(self.model, _Float32Output(encoder))
        _BF16_TWINS[self.model] = (key, twin)
        return twin

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
            model = self._forward_model()
            with torch.inference_mode():
                bar = tqdm(total=len(order), desc="comparisons", unit="pair", disable=not progress, leave=False)
                for start in range(0, len(order), self.batch_size):
                    chunk = order[start:start + self.batch_size]
                    batch = self.encoder.collate([features[k] for k in chunk])
                    batch = {name: t.to(self.device) for name, t in batch.items()}
                    logits[chunk] = model(**batch).logits.float().cpu()
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
        or ``knockout`` (about 2N + 6 forward passes, all N·(N-1) when N ≤ 4; reliable top-1 only).
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
            return [RankResult(ids[r], ranks_from_scores(s), s.tolist(), aggregation, 2 * knockout_comparisons(n))
                    for r, (s, n) in enumerate(zip(rounds, sizes))]

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
        """The best candidate text per row (knockout by default: about 2N + 6 passes per row)."""
        single = isinstance(instructions, str)
        results = self.rank(instructions, candidates, aggregation=aggregation, inputs=inputs, models=models)
        lists = [candidates] if single else candidates
        best = [texts[result.best] for texts, result in zip(lists, results)]
        return best[0] if single else best


class _Float32Output(nn.Module):
    """Runs an encoder in bf16 (its own bf16 weights, or fp32 weights under ``autocast`` on that device type)
    and hands the ranker its last hidden states in fp32."""

    def __init__(self, encoder: nn.Module, autocast: str | None = None):
        super().__init__()
        self.encoder = encoder
        self.autocast = autocast

    def forward(self, **inputs) -> BaseModelOutput:
        context = torch.autocast(self.autocast, dtype=torch.bfloat16) if self.autocast else contextlib.nullcontext()
        with context:
            hidden = self.encoder(**inputs).last_hidden_state
        return BaseModelOutput(last_hidden_state=hidden.float())


def _with_encoder(model: PairRankerModel, encoder: nn.Module) -> PairRankerModel:
    """A shallow twin of ``model`` that runs ``encoder`` in place of its own and shares everything else
    (head, model prior, config): the caller's model is left as it is."""
    twin = copy.copy(model)
    twin._modules = {**model._modules, "encoder": encoder}
    return twin.eval()


def _weights_key(model: nn.Module) -> tuple:
    """Changes whenever a weight does: an optimizer step or ``load_state_dict`` (in place: the tensor's
    version count), a move to another device or dtype (new storage)."""
    key = []
    for p in model.parameters():
        try:
            version = p._version
        except RuntimeError:     # weights created under inference_mode keep no version count
            version = -1
        key.append((p.device, p.dtype, p.data_ptr(), version))
    return tuple(key)


def _is_partitioned(model: nn.Module) -> bool:
    """True if DeepSpeed ZeRO-3 holds the weights in shards (a copy would hold empty tensors): autocast then."""
    return any(hasattr(p, "ds_id") for p in model.parameters())

"""Per-prompt model weights λ for PackLLM, from the members' next-token log-probs on the prompt.

The fused model predicts token v at position t with  p_λ(v) ∝ exp(Σ_k λ_k log p_k(v))  (a weighted
geometric mean of the members). Its mean negative log-likelihood on the prompt,

    f(λ) = 1/T Σ_t [ −Σ_k λ_k log p_k(y_t) + log Σ_v exp(Σ_k λ_k log p_k(v)) ],

is convex in λ (a linear term plus a log-sum-exp of linear functions), so its minimum over the
simplex {λ ≥ 0, Σλ = 1} can be found exactly. The prompt perplexity of the fused model is exp(f).

Inputs are `PromptLogProbs`: for one prompt, each member's log-probs on a support of S tokens per
position, column 0 being the observed token y_t. When the support is not the whole vocabulary, the
last column holds each member's remaining mass (log(1 − Σ_support p_k)) as one pooled token; by
Hölder's inequality the pooled term Π_k tail_k^λ_k bounds the true tail sum from above, so f computed
this way is an upper bound of the true objective that is exact at every vertex (a single member).
The exact solver therefore never does worse than the best single member on the true objective.

Weightings (all return a [K] tensor on the simplex):
    uniform   1/K each
    sim       softmax(−log PPL_k / τ)                        (PackLLM-sim)
    greedy    members by PPL, each mixed in with the best weight on a grid  (PackLLM-opt)
    exact     minimum of f over the simplex; active-set Newton, stopped when a guaranteed upper bound of
              f(λ) − min f is below `tol` nats per token: the smaller of the Frank–Wolfe duality gap and a
              curvature bound (‖projected ∇f‖² / 2μ, μ a certified lower bound of f's curvature near λ)
    shrunk    the exact weights pulled back toward an anchor member (default: the primary, member 0):
              λ = e_a + move·(λ* − e_a)  (move = 1: exact, 0: the anchor alone)

Why `shrunk`: the weights are fitted on the prompt but used on the answer, a different text. On real
pairs (SmolLM2-135M-Instruct + Gemma 3 270M, AlpacaEval val answers) the prompt optimum puts 0.2–0.5
on the weaker member where the answer's own optimum puts 0.0–0.2, so `exact` is worse than the best
member on 14 of 105 answers and more than 10 % worse on 4. f is flat near its optimum, so a partial move
keeps part of the gain (corpus perplexity 8.22 against exact's 8.02 and the best member's 8.54) with no
answer more than 2 % worse than the best member (benchmarks/packllm_quality.py prints the per-row figures).
"""

from __future__ import annotations

import functools
import itertools
import threading
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

WEIGHTINGS = ("uniform", "sim", "greedy", "exact", "shrunk")
LOGP_FLOOR = -1e4  # log-probs below this (including −inf) are raised to it: exp() of it underflows to 0
CHUNK_ELEMENTS = 1 << 18    # exact: positions × support per chunk of a pass: few calls, reused work arrays in cache
KEEP_DIFF_BYTES = 1 << 26   # exact: up to this size, the members' log-prob differences are kept between passes
EXACT_FLOAT32_LOWEST = -1e3  # exact: float32 inputs with log-probs below this are solved in float64 (see `_Evaluator`)
DIFF_LIMIT = 800.0          # exact: unchecked inputs whose members' log-probs differ by more are checked first
LOG2_E = 1.4426950408889634  # exact: exp(x) is computed as exp2(LOG2_E·x) (see `_Evaluator`)
SHRUNK_MOVE = 0.3           # shrunk: the share of the way from the anchor member to the exact optimum


@dataclass
class PromptLogProbs:
    """One prompt's log-probs ``logp[k, t, s]`` (member k, position t, token s of a support or of the whole
    vocabulary) and ``target[t]``, the index of the observed token (default: column 0).

    Shapes and targets are checked here; the values on first use, since a whole vocabulary is large and the
    exact solver checks what it reads within its own first pass instead: NaN or +inf then raise ValueError,
    and log-probs below LOGP_FLOOR (log 0 = −inf included) are raised to it, so that 0·log p stays 0 for a
    member of weight 0 (``logp`` is then replaced by the floored copy; `values` returns it checked)."""

    logp: torch.Tensor
    target: torch.Tensor | None = None

    def __post_init__(self):
        if self.logp.ndim != 3 or self.logp.shape[1] == 0:
            raise ValueError("PromptLogProbs.logp must be [members, positions>0, support], "
                             f"got {tuple(self.logp.shape)}")
        logp = self.logp.detach().cpu()
        self.logp = (logp if logp.dtype in (torch.float32, torch.float64) else logp.float()).contiguous()
        positions = self.logp.shape[1]
        if self.target is None:
            self.target = torch.zeros(positions, dtype=torch.long)
        self.target = self.target.detach().cpu().long()
        if self.target.shape != (positions,) or (self.target < 0).any() or (self.target >= self.logp.shape[2]).any():
            raise ValueError(f"PromptLogProbs.target must hold {positions} token indices below {self.logp.shape[2]}")

    @property
    def members(self) -> int:
        return self.logp.shape[0]

    @functools.cached_property
    def _range(self) -> tuple[float, float]:
        lowest, highest = torch.aminmax(self.logp)    # one pass (a whole vocabulary is large); NaN propagates to both
        if torch.isnan(highest) or highest == float("inf"):
            raise ValueError("PromptLogProbs.logp holds NaN or +inf values")
        if lowest < LOGP_FLOOR:
            self.logp = self.logp.clamp_min(LOGP_FLOOR)     # copied only when needed, and only once
        return max(float(lowest), LOGP_FLOOR), float(highest)

    @property
    def values(self) -> torch.Tensor:
        """The checked log-probs: ``logp`` with values below LOGP_FLOOR raised to it."""
        self._range
        return self.logp

    @property
    def lowest(self) -> float:
        return self._range[0]

    @property
    def highest(self) -> float:
        return self._range[1]

    @functools.cached_property
    def observed(self) -> torch.Tensor:
        """ℓ_k(y_t) of the checked values   [K, T]."""
        return _observed(self.values, self.target)

    @property
    def default_tol(self) -> float:
        """Reachable gap tolerance in nats per token: float32 sums over a whole vocabulary are noisier."""
        return 1e-7 if self.logp.dtype == torch.float64 else 1e-5

    @functools.cached_property
    def member_nll(self) -> np.ndarray:
        """Each member's own mean NLL (log PPL) on the prompt: f at the vertices."""
        lse = torch.logsumexp(self.values, dim=2).double()
        return (lse - self.observed.double()).mean(dim=1).numpy()


def _observed(logp: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return logp[:, torch.arange(logp.shape[1]), target]


def objective(scores: PromptLogProbs, weights) -> float:
    """f(λ): mean NLL per position of the fused model (log of its prompt perplexity)."""
    return _value(scores, np.asarray(weights, dtype=np.float64))


def member_nll(scores: PromptLogProbs) -> torch.Tensor:
    """Each member's own log prompt perplexity, as a tensor."""
    return torch.from_numpy(scores.member_nll.copy())


def uniform_weights(scores: PromptLogProbs) -> torch.Tensor:
    scores.values                           # the inputs' check: NaN or +inf are refused by every weighting
    return torch.full((scores.members,), 1.0 / scores.members, dtype=torch.float64)


def sim_weights(scores: PromptLogProbs, tau: float = 0.1) -> torch.Tensor:
    """PackLLM-sim: members with a lower prompt perplexity weigh more; τ → 0 picks the best one."""
    if tau <= 0:
        raise ValueError(f"sim weighting: tau must be > 0, got {tau}")
    return torch.softmax(-member_nll(scores) / tau, dim=0)


def greedy_weights(scores: PromptLogProbs, grid_step: float = 0.1) -> torch.Tensor:
    """PackLLM-opt (the paper's greedy search).

    Start from the member with the lowest prompt perplexity; then, in order of increasing perplexity,
    mix each further member in as λ ← (1 − w)·λ + w·e_k, with w chosen on the grid {0, step, …, 1}
    to minimise f. (K − 1)·(1/step + 1) objective evaluations.
    """
    if not 0 < grid_step <= 1:
        raise ValueError(f"greedy weighting: grid_step must be in (0, 1], got {grid_step}")
    order = np.argsort(scores.member_nll, kind="stable")
    weights = np.zeros(scores.members)
    weights[order[0]] = 1.0
    grid = np.unique(np.append(np.arange(0.0, 1.0, grid_step), 1.0))
    for k in order[1:]:
        vertex = np.zeros_like(weights)
        vertex[k] = 1.0
        candidates = [(1 - w) * weights + w * vertex for w in grid]
        values = [_value(scores, c) for c in candidates]
        weights = candidates[int(np.argmin(values))]
    return torch.from_numpy(weights)


@dataclass
class ExactResult:
    weights: torch.Tensor
    value: float       # f(λ*)
    gap: float         # a guaranteed upper bound of f(λ*) − min f: the Frank–Wolfe duality gap or the curvature
                       # bound, whichever is smaller (see `exact_weights`)
    iterations: int    # Newton / Frank–Wolfe steps
    converged: bool    # gap ≤ tol (False: max_iter was reached first)
    passes: int = 0    # passes over the whole support (one per point evaluated, one more per Hessian made late)


def exact_weights(scores: PromptLogProbs, tol: float | None = None, max_iter: int = 50) -> ExactResult:
    """The minimum of f over the simplex, to within ``tol`` nats per token (default: 1e-7 for float64
    inputs, 1e-5 for float32 ones, whose sums over a whole vocabulary are noisier).

    Active-set Newton from softmax(−f at the vertices) (read off the observed tokens, which is exact for
    normalised log-probs and only a start otherwise): on the free coordinates, a Newton step constrained
    to Σ d = 0 (a small KKT system), shortened so that no weight goes negative, with a line search on the
    directional derivative (exact to float precision, unlike f's tiny differences near the optimum). When a
    coordinate at 0 should re-enter (the quadratic model's gradient at the Newton point is lower for it than
    for the free coordinates) or the Newton
    system is singular, a Frank–Wolfe step is taken instead. Each point costs one chunked pass over the
    whole support that yields f, ∇f and ∇²f together (`_Evaluator`); real prompts take two. The first pass
    also checks the inputs (see `_Evaluator`); inputs it cannot vouch for (NaN, log 0, huge or unnormalised
    values) are solved again from `PromptLogProbs.values`, after the full check.

    It stops when f(λ) − min f is certified ≤ tol by either bound:
      * the Frank–Wolfe gap g·λ − min_k g_k (tight at a vertex optimum, loose at a sharply curved one);
      * the curvature bound ‖Pg‖² / 2μ, Pg the gradient projected on {Σ d = 0} and μ a lower bound of f's
        curvature on the ball of radius r around λ that provably holds the optimum. Moving λ by x (Σ x = 0,
        ‖x‖ ≤ r) changes the log-ratio of two tokens' weights at one position by Σ_{k≥1} x_k (d_k(v) − d_k(u))
        (d_k = ℓ_k − ℓ₀), at most r·‖R‖ with R_k the largest minus the smallest d'_k the first pass saw (d'_k
        differs from d_k by a constant per position, which cancels), so
        every q_t(v) changes by a factor within exp(±r·‖R‖) and no variance under q (the Hessian is
        mean_t Cov_q(ℓ)) shrinks by more than that: μ(r) = exp(−r·‖R‖)·μ₀, μ₀ the least eigenvalue of the
        Hessian at λ on {Σ d = 0}. If r > 2‖Pg‖/μ(r), f rises along every ray from λ before leaving the
        ball, so the optimum is inside, and there f ≥ f(λ) − ‖Pg‖²/2μ(r) (strong convexity).
    Both bounds hold in exact arithmetic; the pass's float sums add a relative error of about 1e-7 (float32)
    or 1e-16 (float64) to E_q[d'], which the default tolerances leave room for.
    """
    tol = scores.default_tol if tol is None else tol
    if scores.members == 1:
        return ExactResult(torch.ones(1, dtype=torch.float64), float(scores.member_nll[0]), 0.0, 0, True)
    try:
        evaluate = _Evaluator(scores, optimistic=True)
        found, unchecked = _newton(evaluate, tol, max_iter), 0
    except _Recheck as recheck:
        found, unchecked = None, recheck.passes
    if found is None:                       # outside the except: a ValueError here is the user's, not chained
        evaluate = _Evaluator(scores)       # the full check first: NaN or +inf raise here
        evaluate.passes = unchecked
        found = _newton(evaluate, tol, max_iter)
    weights, state, gap, iterations, converged = found
    return ExactResult(torch.from_numpy(weights), state.value, float(max(gap, 0.0)), iterations, converged,
                       evaluate.passes)


def shrunk_weights(scores: PromptLogProbs, move: float = SHRUNK_MOVE, anchor: int | None = 0,
                   **exact_options) -> torch.Tensor:
    """The exact weights pulled back toward one member (the vertex e_a): λ = e_a + move·(λ* − e_a).
    ``move`` = 1 gives `exact`, 0 the anchor alone.

    ``anchor``: the member's index, by default 0 (the primary: the model whose tokens the pack emits);
    None takes the member with the lowest prompt perplexity — which a short prompt can get wrong (on a
    5-token prompt Gemma 3 270M out-read SmolLM2 and was then 70× worse on the answer), hence the default.
    Since f is convex, f(λ) ≤ (1 − move)·f(e_a) + move·f(λ*): the shrunk weights keep a share of the
    prompt gain (more than ``move`` of it near a quadratic optimum) while moving far less weight onto the
    members that only the prompt favours (see the module docstring for why that matters)."""
    if not 0 <= move <= 1:
        raise ValueError(f"shrunk weighting: move must be in [0, 1], got {move}")
    if anchor is not None and not 0 <= anchor < scores.members:
        raise ValueError(f"shrunk weighting: anchor must be a member index below {scores.members} or None, "
                         f"got {anchor}")
    weights = _exact_or_warn(scores, **exact_options)
    vertex = torch.zeros(scores.members, dtype=torch.float64)
    vertex[int(np.argmin(scores.member_nll)) if anchor is None else anchor] = 1.0
    return vertex + move * (weights - vertex)


def solve(scores: PromptLogProbs, weighting: str, **options) -> torch.Tensor:
    """λ for one prompt by name: uniform | sim (tau) | greedy (grid_step) | exact (tol, max_iter)
    | shrunk (move, anchor, and the exact options)."""
    solvers: dict[str, Callable[..., torch.Tensor]] = {
        "uniform": uniform_weights, "sim": sim_weights, "greedy": greedy_weights,
        "exact": _exact_or_warn, "shrunk": shrunk_weights}
    if weighting not in solvers:
        raise ValueError(f"unknown weighting {weighting!r}; choose one of {', '.join(WEIGHTINGS)}")
    return solvers[weighting](scores, **options).to(torch.float32)


def _exact_or_warn(scores: PromptLogProbs, **options) -> torch.Tensor:
    result = exact_weights(scores, **options)
    if not result.converged:
        warnings.warn(f"exact weights: not converged after {result.iterations} iterations (certified gap "
                      f"{result.gap:.2e}); using the last iterate", RuntimeWarning)
    return result.weights


# -- Newton machinery: heavy sums in torch/numpy (the logp's dtype), the K×K algebra in numpy float64 ------------

class _State:
    """f, ∇f and ∇²f at one point (∇²f made by a second pass on first use where the first pass skipped it)."""

    def __init__(self, value: float, grad: np.ndarray, hess: np.ndarray | Callable[[], np.ndarray]):
        self.value, self.grad, self._hess = value, grad, hess

    @functools.cached_property
    def hess(self) -> np.ndarray:
        return self._hess() if callable(self._hess) else self._hess


def _softmin(values: np.ndarray) -> np.ndarray:
    weights = np.exp(-(values - values.min()))
    return weights / weights.sum()


def _newton(evaluate: "_Evaluator", tol: float, max_iter: int):
    """Active-set Newton from softmax(−mean_t ℓ_k(y_t)) (see `exact_weights`). Returns (weights, state, bound,
    iterations, converged), bound the certified f(λ) − min f."""
    weights = _softmin(-evaluate.observed.mean(axis=1))
    state = evaluate(weights)
    iterations = 0
    while True:
        grad = state.grad
        bound = float(grad @ weights - grad.min())                      # Frank–Wolfe gap
        if bound > tol:
            bound = min(bound, _curvature_bound(grad, state.hess, evaluate.spread))
        if bound <= tol:
            return weights, state, bound, iterations, True
        if iterations >= max_iter:
            return weights, state, bound, iterations, False
        direction = _newton_direction(grad, state.hess, weights > 0)
        newton = direction is not None and grad @ direction < 0
        if not newton:
            direction = -weights
            direction[np.argmin(grad)] += 1.0      # Frank–Wolfe: toward the best vertex
        iterations += 1
        slope0, hess = float(grad @ direction), state.hess
        step = _max_feasible_step(weights, direction)
        if not newton and float(direction @ hess @ direction) > 0:
            # first try the minimum of the quadratic model along the Frank–Wolfe direction, not its far end
            step = min(step, -slope0 / float(direction @ hess @ direction))
        weights, state, step = _line_search(evaluate, weights, direction, step, slope0, state.value)


def _curvature_bound(grad: np.ndarray, hess: np.ndarray, spread: float) -> float:
    """‖Pg‖² / 2μ(r) for the smallest radius r with r > 2‖Pg‖/μ(r), μ(r) = exp(−r·spread)·μ₀ (see
    `exact_weights`: ``spread`` bounds how much a move of length 1 on {Σ x = 0} can change the log-ratio of two
    tokens' weights); inf when the curvature is too small for any radius."""
    members = len(grad)
    projected = float(np.linalg.norm(grad - grad.mean()))
    if projected == 0.0:
        return 0.0
    basis = _tangent_basis(members)
    least = float(np.linalg.eigvalsh(basis.T @ hess @ basis)[0])
    rate, reach = max(spread, 1e-12), 2 * projected / least if least > 0 else np.inf
    if not reach * rate * np.e < 1:      # r·exp(−rate·r) never exceeds reach
        return float("inf")
    radius = reach
    for _ in range(100):                 # the smallest root of r = reach·exp(rate·r), from below
        radius, previous = reach * np.exp(rate * radius), radius
        if radius - previous <= 1e-12 * radius:
            break
    radius *= 1 + 1e-9
    if not radius * np.exp(-rate * radius) > reach:
        return float("inf")
    return projected ** 2 / (2 * least * np.exp(-rate * radius))


@functools.lru_cache(maxsize=None)
def _tangent_basis(members: int) -> np.ndarray:
    """An orthonormal basis [K, K−1] of {x: Σ x = 0}."""
    basis = np.linalg.qr(np.column_stack([np.ones(members), np.eye(members)[:, 1:]]))[0][:, 1:]
    basis.flags.writeable = False
    return basis


def _mixed(scores: PromptLogProbs, weights: np.ndarray) -> torch.Tensor:
    w = torch.from_numpy(weights).to(scores.logp.dtype)
    values = scores.values
    return (w @ values.reshape(scores.members, -1)).reshape(values.shape[1:])            # Σ_k λ_k ℓ_k   [T, S]


def _value(scores: PromptLogProbs, weights: np.ndarray) -> float:
    lse = torch.logsumexp(_mixed(scores, weights), dim=1).double()
    return float((lse - torch.from_numpy(weights) @ scores.observed.double()).mean())


class _Evaluator:
    """f, ∇f and ∇²f at one λ from one pass over the whole support, in coordinates relative to member 0:
    λ·ℓ = ℓ₀ + Σ_{k≥1} λ_k d_k with d_k = ℓ_k − ℓ₀, each d_k centred per position on its observed value,
    d'_k = d_k − d_k(y_t) (so that sums of e·d'_k lose no digits to an offset between members). Per position
    t, with e_t = exp(ℓ₀ + Σ λ_k d'_k − shift_t), z_t = Σ_s e_t and q_t = e_t / z_t:

        f = mean_t (shift_t + log z_t + Σ_k λ_k d_k(y_t) − λ·ℓ_t(y_t)),   ∂f/∂λ_k = mean_t E_q[d'_k],
        ∂²f/∂λ_k∂λ_j = mean_t (E_q[d'_k d'_j] − E_q[d'_k] E_q[d'_j])

    for k, j ≥ 1, and 0 in member 0's row and column. This gradient is ∇f minus a constant vector and this
    Hessian agrees with ∇²f on {Σ x = 0}; both are all that the simplex-constrained steps and the bounds use.

    The pass goes over chunks of positions whose work arrays (e and e·d'_k, reused, so they stay in cache)
    are small: per chunk K − 1 adds, one exp, one sum, K − 1 products and K − 1 batched matrix products, with
    every view made once (per-call overhead matters at this size). The exp is taken as exp2(log₂e · x):
    torch's exp2 is vectorised and several times faster than exp on CPUs, at the cost of one more rounding of
    x. d'_k does not depend on λ: a pass that finds no d' of its own in the buffer computes it (a subtraction
    and a centring per member, and d'_k's smallest and largest value, for the curvature bound's R_k), and
    later passes read it, unless the prompt's d' would exceed KEEP_DIFF_BYTES, when every pass recomputes it
    chunk by chunk.

    Checked inputs (``optimistic`` False: `PromptLogProbs.values`) go without a shift in the exp (no max pass)
    where no log-prob exceeds 40; chunks where some z_t then overflows or falls below 1e-30 (what underflowed
    would be below 1e-16 of z_t) are redone with shift_t = each position's maximum, as are all chunks of other
    inputs. Float32 inputs with extreme log-probs, such as floored log 0, are solved in float64: ℓ₀ + λ·d would
    lose their low digits.

    ``optimistic`` reads ``logp`` as given, without the full check's extra pass over it, and vouches for it
    within the pass instead: an observed log-prob below LOGP_FLOOR (or NaN), any d' that is NaN, infinite or
    beyond ±DIFF_LIMIT (which NaN or ±inf in any input and log 0 all produce), or any z_t outside [1e-30, 1e30]
    (huge or unnormalised log-probs), raises `_Recheck`, and the caller solves again with checked inputs.
    Otherwise every ℓ is finite, no sum can overflow, and every token that matters (its exponent within 100 of
    its position's largest, itself within ±70) has |ℓ₀| < DIFF_LIMIT + 170 < 1e3, so float32 loses no more
    digits than in the checked case."""

    @torch.inference_mode()          # the work arrays are inference tensors: every use stays in this mode
    def __init__(self, scores: PromptLogProbs, optimistic: bool = False):
        if optimistic:
            logp, observed = scores.logp, _observed(scores.logp, scores.target)
            if not (observed >= LOGP_FLOOR).all():      # NaN too: the linear term needs the floored values
                raise _Recheck(0)
        else:
            logp, observed = scores.values, scores.observed
            if logp.dtype == torch.float32 and scores.lowest < EXACT_FLOAT32_LOWEST:
                logp = logp.double()
        members, positions, size = logp.shape
        self.members, self.positions, self.passes, self.token = members, positions, 0, next(_TOKENS)
        self.optimistic, self.unshifted, self.spread = optimistic, optimistic or scores.highest <= 40.0, None
        self.observed = observed.double().numpy()                                   # ℓ_k(y_t)   [K, T]
        # d_k is centred on d_k(y_t) before any product: sums of e·d'_k then lose no digits to an offset
        # between members; the offset's share of λ·ℓ goes into the value, and d'_k(y_t) = 0 into the gradient
        centre = (observed[1:] - observed[:1]).to(logp.dtype).numpy()  # d_k(y_t) as the pass computes it  [K−1, T]
        self.centre = centre.astype(np.float64)
        self.centre_error = (self.centre - (self.observed[1:] - self.observed[:1])).mean(axis=1)
        step = max(1, CHUNK_ELEMENTS // size)
        keep = (members - 1) * positions * size * logp.element_size() <= KEEP_DIFF_BYTES
        self.keep = keep
        (diff, weighted), self.user = _scratch(logp.dtype, (members - 1, positions if keep else step, size),
                                               (members, step, size))
        self.z = np.empty(positions, dtype=logp.numpy().dtype)
        logp_np, z = logp.numpy(), torch.from_numpy(self.z)
        self.chunks = []
        for begin in range(0, positions, step):
            end = min(positions, begin + step)
            rows = slice(begin, end) if keep else slice(0, end - begin)
            self.chunks.append(_Chunk(begin, end, logp_np, diff[:, rows], weighted[:, :end - begin], z[begin:end],
                                      centre[:, begin:end]))

    @torch.inference_mode()
    def __call__(self, weights: np.ndarray, hessian: bool | None = None) -> _State:
        others, self.passes = self.members - 1, self.passes + 1
        # d' is computed afresh unless kept from this evaluator's last pass (no other evaluator's pass since)
        fill = not (self.keep and self.user[0] == self.token)
        if hessian is None:
            hessian = not (weights == 1.0).any()  # at a vertex the Frank–Wolfe gap usually decides: no Hessian
        sums = np.empty((self.positions, others + 1 if hessian else 1, others))   # Σ_s e·d'_j, Σ_s e·d'_k·d'_j
        shift = np.zeros(self.positions)
        alphas = [float(w) for w in weights[1:]]
        self.user[0] = None          # the buffer is this pass's from here on, whether it ends or raises
        with np.errstate(all="ignore"):   # overflow, NaN: found from z and d' below, and handled
            for chunk in self.chunks:
                chunk.run(alphas, hessian, sums[chunk.begin:chunk.end], None if self.unshifted else shift, fill)
        self.user[0] = self.token
        if fill:
            low = np.min([chunk.low for chunk in self.chunks], axis=0)            # per member k ≥ 1
            high = np.max([chunk.high for chunk in self.chunks], axis=0)
            if self.optimistic and not (-DIFF_LIMIT <= low.min() and high.max() <= DIFF_LIMIT):   # NaN fails too
                raise _Recheck(self.passes)
            self.spread = float(np.linalg.norm(high - low))
        z = self.z.astype(np.float64)
        if self.optimistic:
            if not ((z >= 1e-30) & (z <= 1e30)).all():
                raise _Recheck(self.passes)
        else:
            unsafe = ~(np.isfinite(z) & (z >= 1e-30))
            if self.unshifted and unsafe.any():          # rare: redo the chunks that under- or overflowed, shifted
                for chunk in self.chunks:     # kept d' was just filled; a per-chunk buffer holds the last chunk's
                    if unsafe[chunk.begin:chunk.end].any():
                        chunk.run(alphas, hessian, sums[chunk.begin:chunk.end], shift, not self.keep)
                z = self.z.astype(np.float64)
        sums /= z[:, None, None]
        first = sums[:, 0]                                                   # E_q[d'_j]   [T, K−1]
        lse = shift + np.log(z) + weights[1:] @ self.centre                  # log Σ_s exp(λ·ℓ) per position
        value = float((lse - weights @ self.observed).mean())
        grad = np.concatenate([[0.0], first.mean(axis=0) + self.centre_error])
        if not hessian:
            return _State(value, grad, lambda: self(weights, hessian=True).hess)
        hess = np.zeros((others + 1, others + 1))
        hess[1:, 1:] = (sums[:, 1:] - first[:, :, None] * first[:, None, :]).mean(axis=0)
        return _State(value, grad, hess)


class _Recheck(Exception):
    """An optimistic `_Evaluator` met inputs that need `PromptLogProbs`' full check (after ``passes`` passes)."""

    def __init__(self, passes: int):
        super().__init__(passes)
        self.passes = passes


_SCRATCH = threading.local()
_TOKENS = itertools.count()


def _scratch(dtype: torch.dtype, *shapes: tuple[int, ...]) -> tuple[list[torch.Tensor], list]:
    """Arrays of these shapes, views of one buffer kept per thread (the caller's) and dtype, and the buffer's
    user cell: ``[token]`` of the evaluator whose pass wrote it last. Fresh arrays of this size would cost page
    faults on every solve, so the buffer is reused and only grows: it holds up to KEEP_DIFF_BYTES of kept
    differences plus K × CHUNK_ELEMENTS work elements, for each thread and dtype that solved, until the thread
    ends. Views of one call and the next (in the same thread and dtype) share memory, which the user cell tells
    the evaluators; a grown buffer is a new one with a new cell, and older views keep the old one alive.
    Two threads must not call the same evaluator at the same time."""
    sizes = [int(np.prod(shape)) for shape in shapes]
    buffers = _SCRATCH.__dict__.setdefault("buffers", {})
    buffer, user = buffers.get(dtype, (None, None))
    if buffer is None or buffer.numel() < sum(sizes):
        buffer, user = buffers[dtype] = torch.empty(sum(sizes), dtype=dtype), [None]
    views, offset = [], 0
    for shape, n in zip(shapes, sizes):
        views.append(buffer[offset:offset + n].view(shape))
        offset += n
    return views, user


class _Chunk:
    """One chunk of positions of `_Evaluator`'s pass, with its views made once."""

    def __init__(self, begin, end, logp, diff, weighted, z, centre):
        self.begin, self.end, self.z, self.centre = begin, end, z, centre
        self.base_np, self.others_np = logp[0, begin:end], logp[1:, begin:end]
        self.base, self.diff, self.e = torch.from_numpy(self.base_np), diff, weighted[0]
        self.diff_np, self.e_np = diff.numpy(), weighted[0].numpy()
        self.weighted_np = weighted.numpy().transpose(1, 0, 2)                    # [c, K, S] view: e, e·d'_k
        self.products = [self.weighted_np[:, k + 1] for k in range(len(diff))]
        self.columns = [self.diff_np[k][:, :, None] for k in range(len(diff))]

    def run(self, alphas, hessian, sums, shift, fill) -> None:
        """e = exp(ℓ₀ + Σ λ_k d'_k − shift) (shift: each position's maximum, written into ``shift``; None: no
        shift), z = Σ e, and ``sums`` = Σ e·d'_j (and Σ e·d'_k·d'_j), d'_k = d_k − d_k(y_t), computed first
        into its buffer where ``fill``, with its smallest and largest value per member (``low``, ``high``)."""
        if fill:
            for k in range(len(alphas)):
                np.subtract(self.others_np[k], self.base_np, out=self.diff_np[k])
                self.diff_np[k] -= self.centre[k][:, None]
            self.low = [float(self.diff_np[k].min()) for k in range(len(alphas))]      # NaN propagates
            self.high = [float(self.diff_np[k].max()) for k in range(len(alphas))]
        for k, alpha in enumerate(alphas):
            torch.add(self.base if k == 0 else self.e, self.diff[k], alpha=alpha, out=self.e)
        if shift is not None:
            top = self.e_np.max(axis=1)
            shift[self.begin:self.end] = top
            self.e_np -= top[:, None]
        torch.mul(self.e, LOG2_E, out=self.e)
        torch.exp2(self.e, out=self.e)
        torch.sum(self.e, dim=1, out=self.z)
        if hessian:
            for k, product in enumerate(self.products):
                np.multiply(self.e_np, self.diff_np[k], out=product)
        rows = self.weighted_np if hessian else self.weighted_np[:, :1]     # [c, K or 1, S]: e (, e·d_k)
        for j, column in enumerate(self.columns):
            sums[:, :, j] = np.matmul(rows, column)[:, :, 0]


def _newton_direction(grad, hess, free):
    index = np.flatnonzero(free)
    n = len(index)
    if n < 2:
        return None
    kkt = np.zeros((n + 1, n + 1))
    kkt[:n, :n] = hess[np.ix_(index, index)] + 1e-12 * np.eye(n)
    kkt[:n, n] = kkt[n, :n] = 1.0
    rhs = np.concatenate([-grad[index], [0.0]])
    try:
        solution = np.linalg.solve(kkt, rhs)
    except np.linalg.LinAlgError:
        return None
    if not np.isfinite(solution).all():
        return None
    direction = np.zeros_like(grad)
    direction[index] = solution[:n]
    # a zero weight wants to grow if, at the Newton point, the quadratic model's gradient is lower for it than
    # for the free coordinates (equal there): then this is not a Newton step. (Compared on the model's gradient,
    # not on grad and the KKT multiplier, so that it does not depend on which constant vector grad carries.)
    model = grad + hess @ direction
    if ((~free) & (model < model[index].mean() - 1e-12)).any():
        return None
    return direction


def _max_feasible_step(weights, direction):
    shrinking = direction < 0
    if not shrinking.any():
        return 1.0
    return min(1.0, float((weights[shrinking] / -direction[shrinking]).min()))


def _line_search(evaluate, weights, direction, step, slope0, value0):
    """A step along ``direction`` where the directional derivative φ'(s) = ∇f(λ + s·d)·d has shrunk to
    ≤ 0.1 of its start, found by regula falsi on φ' (exact to float precision, unlike f's tiny
    differences near the optimum). A point with φ' ≤ 0 cannot be above the start (φ is convex); one
    with a small positive φ' is taken only if f did not rise. Returns (point, its state, step length)."""
    def at(s):
        point = _clean(weights + s * direction)
        state = evaluate(point)
        return point, state, float(state.grad @ direction)

    def acceptable(state, slope):
        return slope <= 0 or (slope <= 0.1 * abs(slope0) and state.value <= value0 + 1e-12 * max(1.0, abs(value0)))

    point, state, slope = at(step)
    if slope <= 0 or acceptable(state, slope):
        return point, state, step
    lo, lo_slope, hi, hi_slope = 0.0, slope0, step, slope
    for _ in range(30):
        s = lo + (hi - lo) * lo_slope / (lo_slope - hi_slope)
        point, state, slope = at(s)
        if abs(slope) <= 0.1 * abs(slope0) and acceptable(state, slope):
            break
        if slope > 0:
            hi, hi_slope = s, slope
            lo_slope /= 2                                  # Illinois: keep both ends moving
        else:
            lo, lo_slope = s, slope
            hi_slope /= 2
    return point, state, s


def _clean(weights):
    weights = np.where(weights < 1e-12, 0.0, weights)
    return weights / weights.sum()

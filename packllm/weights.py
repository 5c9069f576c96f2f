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
    exact     minimum of f over the simplex; active-set Newton, stopped when the Frank–Wolfe duality
              gap (a guaranteed upper bound of f(λ) − min f) is below `tol` nats per token, or when
              Newton's own estimate of f(λ) − min f is below tol/100 (at sharp optima the gap is loose)
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

WEIGHTINGS = ("uniform", "sim", "greedy", "exact")
LOGP_FLOOR = -1e4  # log-probs below this (including −inf) are raised to it: exp() of it underflows to 0


@dataclass
class PromptLogProbs:
    """One prompt's log-probs ``logp[k, t, s]`` (member k, position t, token s of a support or of the whole
    vocabulary) and ``target[t]``, the index of the observed token (default: column 0)."""

    logp: torch.Tensor
    target: torch.Tensor | None = None

    def __post_init__(self):
        if self.logp.ndim != 3 or self.logp.shape[1] == 0:
            raise ValueError("PromptLogProbs.logp must be [members, positions>0, support], "
                             f"got {tuple(self.logp.shape)}")
        logp = self.logp.detach().cpu()
        logp = logp if logp.dtype in (torch.float32, torch.float64) else logp.float()
        if torch.isnan(logp).any() or (logp == float("inf")).any():
            raise ValueError("PromptLogProbs.logp holds NaN or +inf values")
        self.logp = logp.clamp_min(LOGP_FLOOR)   # log 0 → a finite floor, so 0·log p stays 0 for λ_k = 0
        positions = self.logp.shape[1]
        if self.target is None:
            self.target = torch.zeros(positions, dtype=torch.long)
        self.target = self.target.detach().cpu().long()
        if self.target.shape != (positions,) or (self.target < 0).any() or (self.target >= self.logp.shape[2]).any():
            raise ValueError(f"PromptLogProbs.target must hold {positions} token indices below {self.logp.shape[2]}")
        self.observed = self.logp[:, torch.arange(positions), self.target]        # [K, T]
        self.flat = self.logp.reshape(self.members, -1)

    @property
    def members(self) -> int:
        return self.logp.shape[0]

    @property
    def default_tol(self) -> float:
        """Reachable gap tolerance in nats per token: float32 sums over a whole vocabulary are noisier."""
        return 1e-7 if self.logp.dtype == torch.float64 else 1e-5

    @functools.cached_property
    def member_nll(self) -> np.ndarray:
        """Each member's own mean NLL (log PPL) on the prompt: f at the vertices."""
        lse = torch.logsumexp(self.logp, dim=2).double()
        return (lse - self.observed.double()).mean(dim=1).numpy()


def objective(scores: PromptLogProbs, weights) -> float:
    """f(λ): mean NLL per position of the fused model (log of its prompt perplexity)."""
    return _value(scores, np.asarray(weights, dtype=np.float64))


def member_nll(scores: PromptLogProbs) -> torch.Tensor:
    """Each member's own log prompt perplexity, as a tensor."""
    return torch.from_numpy(scores.member_nll.copy())


def uniform_weights(scores: PromptLogProbs) -> torch.Tensor:
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
    gap: float         # Frank–Wolfe duality gap at λ*: a guaranteed upper bound of f(λ*) − min f
    decrement: float   # Newton's estimate of f(λ*) − min f at λ* (much tighter than the gap at sharp optima)
    iterations: int
    converged: bool    # gap ≤ tol or decrement ≤ tol/100 (False: max_iter was reached first)


def exact_weights(scores: PromptLogProbs, tol: float | None = None, max_iter: int = 50) -> ExactResult:
    """The minimum of f over the simplex, to within ``tol`` nats per token (default: 1e-7 for float64
    inputs, 1e-5 for float32 ones, whose sums over a whole vocabulary are noisier).

    Active-set Newton: on the free coordinates, a Newton step constrained to Σ d = 0 (a small KKT
    system), shortened so that no weight goes negative, with a line search on the directional
    derivative (exact to float precision, unlike f's tiny differences near the optimum). When a
    coordinate at 0 should re-enter (its gradient is below the free coordinates' multiplier) or the
    Newton system is singular, a Frank–Wolfe step is taken instead. It stops when the Frank–Wolfe gap
    g·λ − min_k g_k (a guaranteed bound of f(λ) − min f for a convex f) is ≤ tol, or when Newton's
    own estimate of f(λ) − min f (half the Newton decrement, on a settled active set) is ≤ tol/100 —
    at sharp optima the gap bound is loose while the Newton estimate is accurate.
    """
    tol = scores.default_tol if tol is None else tol
    if scores.members == 1:
        return ExactResult(torch.ones(1, dtype=torch.float64), float(scores.member_nll[0]), 0.0, 0.0, 0, True)
    nll = scores.member_nll
    weights = np.exp(-(nll - nll.min()))
    weights /= weights.sum()                       # softmax(−log PPL): a good interior start
    value, grad, hess = _value_grad_hess(scores, weights)
    iterations = 0
    while True:
        gap = float(grad @ weights - grad.min())
        direction = _newton_direction(grad, hess, weights > 0)
        newton = direction is not None and grad @ direction < 0
        decrement = -float(grad @ direction) / 2 if newton else (0.0 if direction is not None else float("nan"))
        converged = gap <= tol or (direction is not None and decrement <= tol / 100)
        if converged or iterations >= max_iter:
            break
        if not newton:
            direction = -weights
            direction[np.argmin(grad)] += 1.0      # Frank–Wolfe: toward the best vertex
        iterations += 1
        weights, (value, grad, hess) = _line_search(scores, weights, direction, _max_feasible_step(weights, direction),
                                                    float(grad @ direction), value)
    return ExactResult(torch.from_numpy(weights), value, max(gap, 0.0), decrement, iterations, converged)


def solve(scores: PromptLogProbs, weighting: str, **options) -> torch.Tensor:
    """λ for one prompt by name: uniform | sim (tau) | greedy (grid_step) | exact (tol, max_iter)."""
    solvers: dict[str, Callable[..., torch.Tensor]] = {
        "uniform": uniform_weights, "sim": sim_weights, "greedy": greedy_weights,
        "exact": _exact_or_warn}
    if weighting not in solvers:
        raise ValueError(f"unknown weighting {weighting!r}; choose one of {', '.join(WEIGHTINGS)}")
    return solvers[weighting](scores, **options).to(torch.float32)


def _exact_or_warn(scores: PromptLogProbs, **options) -> torch.Tensor:
    result = exact_weights(scores, **options)
    if not result.converged:
        warnings.warn(f"exact weights: not converged after {result.iterations} iterations (gap {result.gap:.2e}, "
                      f"Newton estimate {result.decrement:.2e}); using the last iterate", RuntimeWarning)
    return result.weights


# -- Newton machinery: heavy sums in torch (the logp's dtype), the K×K algebra in numpy float64 ----------

def _mixed(scores: PromptLogProbs, weights: np.ndarray) -> torch.Tensor:
    w = torch.from_numpy(weights).to(scores.logp.dtype)
    return (w @ scores.flat).reshape(scores.logp.shape[1:])            # Σ_k λ_k ℓ_k   [T, S]


def _value(scores: PromptLogProbs, weights: np.ndarray) -> float:
    lse = torch.logsumexp(_mixed(scores, weights), dim=1).double()
    return float((lse - torch.from_numpy(weights) @ scores.observed.double()).mean())


def _value_grad_hess(scores: PromptLogProbs, weights: np.ndarray):
    """f, ∇f = mean_t(E_q[ℓ] − ℓ_y) and ∇²f = mean_t Cov_q(ℓ), with q_t = softmax_s(λ·ℓ_t)."""
    mixed = _mixed(scores, weights)
    lse = torch.logsumexp(mixed, dim=1)
    q = torch.exp(mixed - lse[:, None]).reshape(-1)                     # [T·S]
    mean = (scores.logp * q.reshape(1, *mixed.shape)).sum(dim=2)       # E_q[ℓ_k] per position   [K, T]
    centred = (scores.logp - mean[:, :, None]).reshape(scores.members, -1)   # no cancellation in Cov_q
    observed = scores.observed.double()
    positions = mixed.shape[0]
    value = float((lse.double() - torch.from_numpy(weights) @ observed).mean())
    grad = (mean.double() - observed).mean(dim=1).numpy()
    hess = ((centred * q) @ centred.T).double().numpy() / positions
    return value, grad, hess


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
    multiplier = -solution[n]
    if ((~free) & (grad < multiplier - 1e-12)).any():   # a zero weight wants to grow: not a Newton step
        return None
    direction = np.zeros_like(grad)
    direction[index] = solution[:n]
    return direction


def _max_feasible_step(weights, direction):
    shrinking = direction < 0
    if not shrinking.any():
        return 1.0
    return min(1.0, float((weights[shrinking] / -direction[shrinking]).min()))


def _line_search(scores, weights, direction, step, slope0, value0):
    """A step along ``direction`` where the directional derivative φ'(s) = ∇f(λ + s·d)·d has shrunk to
    ≤ 0.1 of its start, found by regula falsi on φ' (exact to float precision, unlike f's tiny
    differences near the optimum). A point with φ' ≤ 0 cannot be above the start (φ is convex); one
    with a small positive φ' is taken only if f did not rise."""
    def at(s):
        point = _clean(weights + s * direction)
        state = _value_grad_hess(scores, point)
        return point, state, float(state[1] @ direction)

    def acceptable(state, slope):
        return slope <= 0 or (slope <= 0.1 * abs(slope0) and state[0] <= value0 + 1e-12 * max(1.0, abs(value0)))

    point, state, slope = at(step)
    if slope <= 0 or acceptable(state, slope):
        return point, state
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
    return point, state


def _clean(weights):
    weights = np.where(weights < 1e-12, 0.0, weights)
    return weights / weights.sum()

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
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

WEIGHTINGS = ("uniform", "sim", "greedy", "exact", "shrunk")
LOGP_FLOOR = -1e4  # log-probs below this (including −inf) are raised to it: exp() of it underflows to 0
SCREEN_MARGIN = 10.0        # exact: screened support = tokens within this many nats of a position's top log-prob
SCREEN_MIN_SUPPORT = 2048   # exact: smaller supports are solved whole (screening would not pay)
SCREEN_MAX_SHARE = 0.25     # exact: screening is skipped when it would keep more than this share of the support
SHRUNK_MOVE = 0.3           # shrunk: the share of the way from the anchor member to the exact optimum


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
        lowest, highest = torch.aminmax(logp)    # one pass (a whole vocabulary is large); NaN propagates to both
        if torch.isnan(highest) or highest == float("inf"):
            raise ValueError("PromptLogProbs.logp holds NaN or +inf values")
        # log 0 → a finite floor, so 0·log p stays 0 for λ_k = 0 (copied only when something is below it)
        self.logp = logp.clamp_min(LOGP_FLOOR) if lowest < LOGP_FLOOR else logp.contiguous()
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
    decrement: float   # Newton's estimate of f(λ*) − min f (much tighter than the gap at sharp optima); NaN when
                       # the gap alone certified λ* (the estimate needs the Hessian, which was then not computed)
    iterations: int    # Newton / Frank–Wolfe iterations on the whole support
    converged: bool    # gap ≤ tol or decrement ≤ tol/100 (False: max_iter was reached first)
    screened_iterations: int = 0    # iterations on the screened support before it (0: no screening)
    screened_support: float = 0.0   # mean tokens per position kept by the screen (0: no screening)
    member_values: np.ndarray | None = None   # f at each vertex: each member's own log prompt perplexity


def exact_weights(scores: PromptLogProbs, tol: float | None = None, max_iter: int = 50,
                  screen_margin: float | None = SCREEN_MARGIN) -> ExactResult:
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

    Screening (a large support, ``screen_margin`` not None): almost all of a real vocabulary carries
    negligible mass under every member, yet every Newton iteration would pay for all of it. So the
    solver first finds the optimum of the *screened bound* — per position only the tokens whose
    max_k ℓ_k is within ``screen_margin`` nats of the position's highest log-prob, plus the observed
    token and one pooled column for the rest (see `_Screened`) — which is cheap; then it continues from
    there on the whole support, where the first evaluation is the certificate: if it already meets the
    stopping rule no further work is done, otherwise Newton goes on with the true objective (on real
    prompts: one more step, rarely two). The stopping rule, hence the guarantee, is always that of the
    whole support; the screen only decides how much whole-support work is left.
    """
    tol = scores.default_tol if tol is None else tol
    if screen_margin is not None and not screen_margin > 0:
        raise ValueError(f"exact weighting: screen_margin must be > 0 (or None: no screening), got {screen_margin}")
    if scores.members == 1:
        return ExactResult(torch.ones(1, dtype=torch.float64), float(scores.member_nll[0]), 0.0, 0.0, 0, True,
                           member_values=scores.member_nll)
    screened = _Screened.build(scores, screen_margin) if screen_margin is not None else None
    screened_iterations = 0
    # the screened bound is exact at the vertices (for normalised inputs), so it gives each member's f cheaply
    member_values = screened.vertex_values if screened is not None else scores.member_nll
    start = _softmin(member_values)                      # softmax(−log PPL): a good interior start
    if screened is not None:
        start, _, _, _, screened_iterations, _ = _newton(screened.evaluate, start, tol, max_iter)
    weights, state, gap, decrement, iterations, converged = _newton(_dense_evaluator(scores, screened), start, tol,
                                                                    max_iter)
    return ExactResult(torch.from_numpy(weights), state.value, max(gap, 0.0), decrement, iterations, converged,
                       screened_iterations, screened.support if screened is not None else 0.0, member_values)


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
    result = _exact_or_warn(scores, **exact_options, return_result=True)
    vertex = torch.zeros(scores.members, dtype=torch.float64)
    vertex[int(np.argmin(result.member_values)) if anchor is None else anchor] = 1.0
    return vertex + move * (result.weights - vertex)


def solve(scores: PromptLogProbs, weighting: str, **options) -> torch.Tensor:
    """λ for one prompt by name: uniform | sim (tau) | greedy (grid_step) | exact (tol, max_iter, screen_margin)
    | shrunk (move, anchor, and the exact options)."""
    solvers: dict[str, Callable[..., torch.Tensor]] = {
        "uniform": uniform_weights, "sim": sim_weights, "greedy": greedy_weights,
        "exact": _exact_or_warn, "shrunk": shrunk_weights}
    if weighting not in solvers:
        raise ValueError(f"unknown weighting {weighting!r}; choose one of {', '.join(WEIGHTINGS)}")
    return solvers[weighting](scores, **options).to(torch.float32)


def _exact_or_warn(scores: PromptLogProbs, return_result: bool = False, **options):
    result = exact_weights(scores, **options)
    if not result.converged:
        warnings.warn(f"exact weights: not converged after {result.iterations} iterations (gap {result.gap:.2e}, "
                      f"Newton estimate {result.decrement:.2e}); using the last iterate", RuntimeWarning)
    return result if return_result else result.weights


# -- Newton machinery: heavy sums in torch (the logp's dtype) or numpy, the K×K algebra in numpy float64 --------

class _State:
    """f, ∇f at one point; ∇²f only when asked (a certificate or a line-search point may not need it)."""

    def __init__(self, value: float, grad: np.ndarray, hess: Callable[[], np.ndarray]):
        self.value, self.grad, self._hess = value, grad, hess

    @functools.cached_property
    def hess(self) -> np.ndarray:
        return self._hess()


def _softmin(values: np.ndarray) -> np.ndarray:
    weights = np.exp(-(values - values.min()))
    return weights / weights.sum()


def _newton(evaluate: Callable[[np.ndarray], _State], weights: np.ndarray, tol: float, max_iter: int):
    """Active-set Newton from ``weights`` on the objective that ``evaluate`` computes (see `exact_weights`).
    Returns (weights, state, gap, decrement, iterations, converged)."""
    state = evaluate(weights)
    iterations = 0
    while True:
        grad = state.grad
        gap = float(grad @ weights - grad.min())
        if gap <= tol:
            return weights, state, gap, float("nan"), iterations, True
        direction = _newton_direction(grad, state.hess, weights > 0)
        newton = direction is not None and grad @ direction < 0
        decrement = -float(grad @ direction) / 2 if newton else (0.0 if direction is not None else float("nan"))
        if direction is not None and decrement <= tol / 100:
            return weights, state, gap, decrement, iterations, True
        if iterations >= max_iter:
            return weights, state, gap, decrement, iterations, False
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
        if newton and step == 1.0 and abs(float(state.grad @ direction)) <= 0.1 * abs(slope0):
            # the full Newton step landed where the quadratic model said (the slope along it nearly vanished):
            # its Hessian is still good for the next step and for the estimate of f − min f
            state.__dict__["hess"] = hess


def _mixed(scores: PromptLogProbs, weights: np.ndarray) -> torch.Tensor:
    w = torch.from_numpy(weights).to(scores.logp.dtype)
    return (w @ scores.flat).reshape(scores.logp.shape[1:])            # Σ_k λ_k ℓ_k   [T, S]


def _value(scores: PromptLogProbs, weights: np.ndarray) -> float:
    lse = torch.logsumexp(_mixed(scores, weights), dim=1).double()
    return float((lse - torch.from_numpy(weights) @ scores.observed.double()).mean())


def _dense_evaluator(scores: PromptLogProbs, screened: "_Screened | None" = None) -> Callable[[np.ndarray], _State]:
    """f, ∇f = mean_t(E_q[ℓ] − ℓ_y) and (lazily) ∇²f = mean_t Cov_q(ℓ), q_t = softmax_s(λ·ℓ_t), on the whole support.

    The passes over the [K, T, S] input are what cost (memory traffic): Σ_k λ_k ℓ_k into a fresh buffer, exp
    in place, the row sums, and one batched product for all E_q[ℓ_k]. With a ``screened`` bound at hand its
    per-position data say whether exp can go without the usual max shift (every position has a token that
    all members give ≥ e^−40, and no log-prob is large), which saves a pass. ∇²f (only for Newton's step
    and its estimate of f − min f, never for the gap) is the costliest part: it is made only when asked
    for, and `_newton` reuses it after a full step that the quadratic model predicted well. Sums stay in
    the input's dtype (blocked reductions: float32 over 49k tokens is good to ~1e-7 relative)."""
    logp, observed = scores.logp, scores.observed.double()
    members, positions, size = logp.shape
    by_position = logp.numpy().transpose(1, 0, 2)                          # [T, K, S] view
    unshifted = screened is not None and screened.exp_is_safe_unshifted

    def evaluate(weights: np.ndarray) -> _State:
        unnormalised = (torch.from_numpy(weights).to(logp.dtype) @ scores.flat).view(positions, size)
        if unshifted:
            top = torch.zeros(positions, 1, dtype=logp.dtype)
        else:
            top = unnormalised.amax(dim=1, keepdim=True)
            unnormalised.sub_(top)
        unnormalised.exp_()
        z = unnormalised.sum(dim=1)                                        # [T]
        e = unnormalised.numpy()
        weighted = np.matmul(by_position, e[:, :, None])[:, :, 0]         # Σ_s e·ℓ_k   [T, K]
        mean = weighted / z.numpy()[:, None]                                # E_q[ℓ_k] per position
        lse = top[:, 0].double() + torch.log(z.double())
        value = float((lse - torch.from_numpy(weights) @ observed).mean())
        grad = (mean.astype(np.float64) - observed.numpy().T).mean(axis=0)

        def hess() -> np.ndarray:
            # Cov_q(ℓ) = E_q[ℓ ℓᵀ] − E_q[ℓ] E_q[ℓ]ᵀ per position
            second = np.matmul(by_position * e[:, None, :], by_position.transpose(0, 2, 1))   # Σ_s e ℓ_k ℓ_l
            second = second.astype(np.float64) / z.numpy().astype(np.float64)[:, None, None]
            first = mean.astype(np.float64)
            return (second - first[:, :, None] * first[:, None, :]).mean(axis=0)
        return _State(value, grad, hess)
    return evaluate


class _Screened:
    """The screened bound of f: per position, the tokens that some member gives a log-prob within a margin of
    the position's highest one, the observed token, and one pooled column holding each member's remaining
    mass (1 − Σ_kept p_k, so the inputs are taken to be normalised). As for a truncated support, Hölder's
    inequality makes this an upper bound of f that is exact at the vertices; its optimum is a start one
    whole-support Newton step away from the true optimum, or already at it.

    Stored ragged (position-major, float64 numpy, the pooled column last in each position's segment), so that
    a position with a flat distribution keeps many tokens without padding every other position to as many."""

    def __init__(self, logp: np.ndarray, starts: np.ndarray, position: np.ndarray, shift: np.ndarray | None,
                 observed: np.ndarray, vertex_values: np.ndarray, support: float):
        self.logp, self.starts, self.position, self.observed = logp, starts, position, observed
        self.shift = shift                  # per-position exp() shift, or None: take each evaluation's maximum
        self.shift_each = None if shift is None else shift[position]
        self.vertex_values, self.support = vertex_values, support

    @classmethod
    def build(cls, scores: PromptLogProbs, margin: float) -> "_Screened | None":
        """None when screening would not pay (a small support, or the margin keeps most of it)."""
        logp = scores.logp
        members, positions, size = logp.shape
        if size < SCREEN_MIN_SUPPORT:
            return None
        top = logp.amax(dim=2).max(dim=0).values.numpy()                  # max_{k,s} ℓ per position
        threshold = (top - margin)[:, None]
        by_member = logp.numpy()
        keep = by_member[0] >= threshold
        for k in range(1, members):
            keep |= by_member[k] >= threshold                              # max_k ℓ_k within the margin
        keep[np.arange(positions), scores.target.numpy()] = True
        flat_index = np.flatnonzero(keep)
        if flat_index.size > SCREEN_MAX_SHARE * keep.size:
            return None
        kept = scores.flat.numpy()[:, flat_index].astype(np.float64)      # [K, n]
        token_position = flat_index // size
        counts = np.bincount(token_position, minlength=positions)
        ends = np.cumsum(counts)
        starts = ends - counts + np.arange(positions)                      # segments grow by the pooled column
        kept_mass = np.add.reduceat(np.exp(kept), ends - counts, axis=1)  # [K, T]
        with np.errstate(divide="ignore"):
            rest = np.maximum(np.log1p(-np.minimum(kept_mass, 1.0)), LOGP_FLOOR)     # pooled remaining mass
        ragged = np.empty((members, flat_index.size + positions))
        ragged[:, np.arange(flat_index.size) + token_position] = kept
        ragged[:, ends + np.arange(positions)] = rest
        position = np.repeat(np.arange(positions), counts + 1)
        # exp(λ·ℓ − shift) with a fixed shift ≥ max λ·ℓ is safe while λ·ℓ ≥ min_k ℓ_k of some token stays
        # far above float64's underflow; otherwise each evaluation takes its own maximum
        shift = np.maximum(top.astype(np.float64), rest.max(axis=0))
        floor_of_best = np.maximum.reduceat(ragged.min(axis=0), starts)  # per position: max over tokens of min_k ℓ_k
        vertex_values = (np.log(kept_mass + np.exp(rest)) - scores.observed.double().numpy()).mean(axis=1)
        screened = cls(ragged, starts, position, shift if (floor_of_best - shift > -600).all() else None,
                       scores.observed.double().numpy(), vertex_values, flat_index.size / positions)
        # the whole-support exp may skip its max shift when no position can underflow (some token has λ·ℓ ≥ −40
        # for every λ, so what flushes to 0 below e^−87 is < 1e-16 of the sum) and nothing can overflow
        kept_floor = np.maximum.reduceat(kept.min(axis=0), ends - counts)  # the same over real tokens only
        screened.exp_is_safe_unshifted = bool((kept_floor >= -40).all() and (shift <= 40).all())
        return screened

    def evaluate(self, weights: np.ndarray) -> _State:
        mixed = weights @ self.logp
        shift = self.shift if self.shift is not None else np.maximum.reduceat(mixed, self.starts)
        unnormalised = np.exp(mixed - (self.shift_each if self.shift is not None else shift[self.position]))
        z = np.add.reduceat(unnormalised, self.starts)
        mean = np.add.reduceat(self.logp * unnormalised, self.starts, axis=1) / z          # E_q[ℓ_k]   [K, T]
        value = float((shift + np.log(z) - weights @ self.observed).mean())
        grad = (mean - self.observed).mean(axis=1)

        def hess() -> np.ndarray:
            centred = self.logp - mean[:, self.position]
            return (centred * (unnormalised / z[self.position])) @ centred.T / len(self.starts)
        return _State(value, grad, hess)


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

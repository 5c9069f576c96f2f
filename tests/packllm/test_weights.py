"""Weight solvers on synthetic log-probs: simplex, optimality order, the certified gap, the support bound."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch

from blendkit.packllm.weights import (
    WEIGHTINGS,
    PromptLogProbs,
    exact_weights,
    greedy_weights,
    objective,
    sim_weights,
    solve,
)


def _random_scores(members: int, positions: int, vocab: int, seed: int) -> PromptLogProbs:
    generator = torch.Generator().manual_seed(seed)
    shared = torch.randn(1, positions, vocab, generator=generator) * 2
    own = torch.randn(members, positions, vocab, generator=generator) * 3
    return PromptLogProbs(torch.log_softmax(shared + own, dim=-1).double())


def _vertex(k: int, members: int) -> torch.Tensor:
    weights = torch.zeros(members, dtype=torch.float64)
    weights[k] = 1
    return weights


@pytest.mark.parametrize("members,seed", [(1, 0), (2, 1), (3, 2), (5, 3), (8, 4)])
def test_weights_are_on_the_simplex_and_exact_is_best(members, seed):
    scores = _random_scores(members, positions=12, vocab=40, seed=seed)
    values = {}
    for weighting in WEIGHTINGS:
        weights = solve(scores, weighting)
        assert weights.shape == (members,)
        assert (weights >= 0).all() and torch.isclose(weights.sum(), torch.tensor(1.0), atol=1e-6)
        values[weighting] = objective(scores, weights.double())
    vertices = [objective(scores, _vertex(k, members)) for k in range(members)]
    tolerance = 1e-6
    assert values["exact"] <= min(values.values()) + tolerance
    assert values["exact"] <= min(vertices) + tolerance
    assert values["greedy"] <= min(vertices) + tolerance      # greedy starts at the best vertex and only improves


def test_exact_matches_a_brute_force_search_on_the_simplex():
    scores = _random_scores(3, positions=10, vocab=30, seed=7)
    grid = [torch.tensor([a, b, 1 - a - b], dtype=torch.float64)
            for a, b in itertools.product(np.linspace(0, 1, 101), repeat=2) if a + b <= 1 + 1e-12]
    best = min(objective(scores, w.clamp_min(0)) for w in grid)
    result = exact_weights(scores, tol=1e-9)
    assert result.gap <= 1e-9                              # the documented stopping rule
    assert result.value <= best + 1e-12                    # no grid point beats it
    assert result.value >= best - 1e-3                     # and the grid (step 0.01) gets close to it


def test_exact_reports_a_valid_gap_and_obeys_the_tolerance():
    scores = _random_scores(4, positions=20, vocab=50, seed=11)
    loose = exact_weights(scores, tol=1e-2)
    tight = exact_weights(scores, tol=1e-10)
    assert tight.gap <= 1e-10
    assert loose.value - tight.value <= loose.gap + 1e-12   # the gap bounds the distance to the optimum
    assert tight.converged and loose.converged
    assert objective(scores, tight.weights) == pytest.approx(tight.value, abs=1e-12)


def test_a_dominant_member_gets_all_the_weight():
    scores = _random_scores(3, positions=8, vocab=20, seed=5)
    logp = scores.logp.clone()
    logp[1, :, 0] = -1e-3                                  # member 1 predicts every observed token with p ≈ 1
    logp[1, :, 1:] = np.log(1e-3 / 19)
    dominant = PromptLogProbs(logp)
    for weighting in ("greedy", "exact"):
        assert solve(dominant, weighting).argmax() == 1
    assert solve(dominant, "exact")[1] > 0.99
    assert sim_weights(dominant, tau=0.01)[1] > 0.999


def test_sim_temperature_interpolates_between_uniform_and_argmin():
    scores = _random_scores(3, positions=8, vocab=20, seed=6)
    hot, cold = sim_weights(scores, tau=1e6), sim_weights(scores, tau=1e-4)
    assert torch.allclose(hot, torch.full((3,), 1 / 3, dtype=hot.dtype), atol=1e-5)
    best = int(torch.argmin(torch.tensor([objective(scores, _vertex(k, 3)) for k in range(3)])))
    assert cold[best] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="tau"):
        sim_weights(scores, tau=0)


def test_greedy_grid_step_one_is_the_best_single_member():
    scores = _random_scores(4, positions=8, vocab=20, seed=8)
    weights = greedy_weights(scores, grid_step=1.0)
    values = [objective(scores, _vertex(k, 4)) for k in range(4)]
    assert weights[int(np.argmin(values))] == 1.0


def test_pooled_support_is_an_upper_bound_that_is_exact_at_the_vertices():
    """Truncating the vocabulary with a pooled 'rest' column (as scoring.py does) never underestimates f."""
    from blendkit.packllm.scoring import AlignedText, _support

    generator = torch.Generator().manual_seed(3)
    logp = torch.log_softmax(torch.randn(3, 15, 200, generator=generator) * 2, dim=-1).double()
    targets = torch.randint(0, 200, (15,), generator=generator)
    aligned = AlignedText(targets, logp, torch.arange(15))
    full = _support(aligned, top_m=None)
    truncated = _support(aligned, top_m=8)
    assert truncated.logp.shape[2] < full.logp.shape[2]
    for k in range(3):
        vertex = _vertex(k, 3)
        assert objective(truncated, vertex) == pytest.approx(objective(full, vertex), abs=1e-5)
    for _ in range(20):
        weights = torch.distributions.Dirichlet(torch.ones(3)).sample().double()
        assert objective(truncated, weights) >= objective(full, weights) - 1e-6
    # the exact weights of the bound are at least as good as every member on the *true* objective
    best = exact_weights(truncated).weights
    assert objective(full, best) <= min(objective(full, _vertex(k, 3)) for k in range(3)) + 1e-6


def test_float32_inputs_and_the_iteration_limit():
    scores64 = _random_scores(3, positions=30, vocab=500, seed=12)
    scores32 = PromptLogProbs(scores64.logp.float())
    exact64, exact32 = exact_weights(scores64), exact_weights(scores32)
    assert exact32.converged
    assert torch.allclose(exact32.weights, exact64.weights, atol=1e-3)
    assert objective(scores64, exact32.weights) <= objective(scores64, exact64.weights) + 1e-5
    capped = exact_weights(_random_scores(4, positions=10, vocab=40, seed=2), tol=0.0, max_iter=1)
    assert not capped.converged and capped.iterations == 1
    assert torch.isclose(capped.weights.sum(), torch.tensor(1.0, dtype=torch.float64))


def test_log_zero_is_floored_and_nan_is_refused():
    logp = torch.log_softmax(torch.randn(2, 5, 7, dtype=torch.float64), dim=-1)
    logp[1, :, 3] = float("-inf")                       # member 2 says token 3 is impossible
    weights = exact_weights(PromptLogProbs(logp)).weights
    assert torch.isfinite(weights).all() and torch.isclose(weights.sum(), torch.tensor(1.0, dtype=torch.float64))
    for bad in (float("nan"), float("inf")):
        logp[0, 0, 0] = bad
        scores = PromptLogProbs(logp)           # values are checked on first use, by every weighting
        for weighting in WEIGHTINGS:
            with pytest.raises(ValueError, match="NaN or \\+inf") as raised:
                solve(scores, weighting)
            assert raised.value.__context__ is None      # not raised while handling the solver's own recheck
    with pytest.raises(ValueError, match="target"):
        PromptLogProbs(torch.zeros(2, 5, 7), target=torch.full((5,), 9))


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="members, positions"):
        PromptLogProbs(torch.zeros(2, 0, 5))
    scores = _random_scores(2, positions=4, vocab=10, seed=0)
    with pytest.raises(ValueError, match="unknown weighting"):
        solve(scores, "median")
    with pytest.raises(ValueError, match="grid_step"):
        greedy_weights(scores, grid_step=0)


# -- the whole-vocabulary evaluator and the certified bound ----------------------------------------------------

def _large_vocabulary_scores(members: int, seed: int, positions: int = 12, vocab: int = 4096,
                             dtype=torch.float64) -> PromptLogProbs:
    """Peaky distributions over a large vocabulary (most tokens far below the top), like a real LM's."""
    generator = torch.Generator().manual_seed(seed)
    shared = torch.randn(1, positions, vocab, generator=generator) * 5
    own = torch.randn(members, positions, vocab, generator=generator) * 2
    logp = torch.log_softmax((shared + own).double(), dim=-1)
    target = torch.randint(0, vocab, (positions,), generator=generator)
    return PromptLogProbs(logp.to(dtype), target)


def _autograd(scores: PromptLogProbs, weights) -> tuple[float, torch.Tensor, torch.Tensor]:
    """f, ∇f and ∇²f of the plain objective by autograd in float64 (independent of the solver's evaluator)."""
    logp = scores.values.double()
    observed = logp[:, torch.arange(logp.shape[1]), scores.target]

    def f(lam):
        return (torch.logsumexp(torch.einsum("k,kts->ts", lam, logp), dim=1) - lam @ observed).mean()
    lam = torch.as_tensor(weights, dtype=torch.float64)
    grad = torch.autograd.functional.jacobian(f, lam)
    hess = torch.autograd.functional.hessian(f, lam)
    return float(f(lam)), grad, hess


def _tangent(matrix: torch.Tensor) -> np.ndarray:
    from blendkit.packllm.weights import _tangent_basis

    basis = _tangent_basis(matrix.shape[0])
    return basis.T @ np.asarray(matrix, dtype=np.float64) @ basis


@pytest.mark.parametrize("members,seed,chunk,keep", [(2, 0, 5 * 4096, True), (3, 1, 4096, True),
                                                     (4, 2, 1 << 17, True), (3, 1, 5 * 4096, False)])
def test_the_whole_vocabulary_evaluator_matches_autograd(members, seed, chunk, keep, monkeypatch):
    """f, the gradient (up to a constant vector, which the simplex steps ignore) and the Hessian on {Σx = 0},
    over chunks of 5, 1 and all 12 positions, with the differences kept between passes or recomputed."""
    import blendkit.packllm.weights as weights_module

    monkeypatch.setattr(weights_module, "CHUNK_ELEMENTS", chunk)
    monkeypatch.setattr(weights_module, "KEEP_DIFF_BYTES", 1 << 26 if keep else 0)
    scores = _large_vocabulary_scores(members, seed)
    evaluate = weights_module._Evaluator(scores)
    for point in (np.full(members, 1.0 / members), np.eye(members)[0] * 0.7 + 0.3 / members):
        state = evaluate(point)
        value, grad, hess = _autograd(scores, point)
        assert state.value == pytest.approx(value, abs=1e-12)
        assert np.allclose(state.grad - state.grad.mean(), (grad - grad.mean()).numpy(), atol=1e-10)
        assert np.allclose(_tangent(torch.from_numpy(state.hess)), _tangent(hess), atol=1e-9)
    vertex = evaluate(np.eye(members)[1])                     # a vertex: the Hessian comes from a second pass
    assert np.allclose(_tangent(torch.from_numpy(vertex.hess)), _tangent(_autograd(scores, np.eye(members)[1])[2]),
                       atol=1e-9)


def _two_member_optimum(scores: PromptLogProbs) -> tuple[float, float]:
    """min f and its λ₁ for K = 2 by ternary search on the plain float64 objective (f is convex in λ₁):
    independent of the solver."""
    def f(a):
        return objective(scores, torch.tensor([1 - a, a], dtype=torch.float64))
    lo, hi = 0.0, 1.0
    for _ in range(200):
        m1, m2 = lo + (hi - lo) / 3, hi - (hi - lo) / 3
        lo, hi = (lo, m2) if f(m1) <= f(m2) else (m1, hi)
    best = min((f(a), a) for a in (0.0, 1.0, (lo + hi) / 2))
    return best


@pytest.mark.parametrize("seed", [3, 4, 9])
def test_the_reported_gap_bounds_the_distance_to_an_independent_optimum(seed):
    scores = _large_vocabulary_scores(2, seed)
    optimum, _ = _two_member_optimum(scores)
    for tol in (1e-2, 1e-4, 1e-6, 1e-8):
        result = exact_weights(scores, tol=tol)
        assert result.converged and result.gap <= tol
        assert result.value - optimum <= result.gap + 1e-12


def test_the_curvature_bound_holds_near_the_optimum_and_is_tighter_than_the_gap():
    """‖Pg‖²/2μ(r) ≥ f(λ) − min f at points around an interior optimum (found independently), and far below
    the Frank–Wolfe gap there (the case it exists for); it refuses (inf) where the curvature cannot vouch for
    the optimum's whereabouts."""
    from blendkit.packllm.weights import _curvature_bound, _Evaluator

    scores = _large_vocabulary_scores(2, seed=9)
    optimum, a_star = _two_member_optimum(scores)
    assert 0.05 < a_star < 0.95                                   # interior
    differences = scores.values[1] - scores.values[0]
    spread = float((differences.amax(dim=1) - differences.amin(dim=1)).max())   # R: d's widest range at a position
    evaluator = _Evaluator(scores, optimistic=True)
    evaluator(np.array([0.5, 0.5]))
    assert spread <= evaluator.spread <= spread + 20        # what the solver uses: d' over all positions, ≥ R
    tighter = 0
    for scale in (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1):
        for sign in (-1, 1):
            point = np.array([1 - a_star - sign * scale, a_star + sign * scale])
            value, grad, hess = _autograd(scores, point)
            bound = _curvature_bound(grad.numpy(), hess.numpy(), spread)
            assert value - optimum <= bound * (1 + 1e-9) + 1e-13
            gap = float(grad @ torch.from_numpy(point) - grad.min())
            tighter += bound < gap / 10
    assert tighter >= 6
    assert _curvature_bound(np.array([0.0, 1.0]), np.zeros((2, 2)), spread) == float("inf")   # no curvature
    assert _curvature_bound(np.array([0.3, 0.3]), np.eye(2), spread) == 0.0                   # stationary


def test_boundary_optima_with_many_members_converge_in_any_member_order():
    """An optimum on a face of the simplex (two of four members at 0): Newton steps on the active set, the
    same answer whichever member comes first (the solver works relative to member 0)."""
    generator = torch.Generator().manual_seed(58)
    logp = torch.log_softmax(torch.randn(1, 12, 200, generator=generator) * 5
                             + torch.randn(4, 12, 200, generator=generator) * 2, dim=-1).double()
    target = torch.randint(0, 200, (12,), generator=generator)
    reference = None
    for order in ([0, 1, 2, 3], [3, 0, 1, 2], [2, 3, 0, 1], [1, 2, 3, 0]):
        result = exact_weights(PromptLogProbs(logp[order], target))
        assert result.converged and result.passes <= 12, (order, result)
        weights = torch.empty(4, dtype=torch.float64)
        weights[torch.tensor(order)] = result.weights
        if reference is None:
            reference = (weights, result.value)
        assert torch.allclose(weights, reference[0], atol=1e-3) and abs(result.value - reference[1]) <= 1e-7
    assert (reference[0] < 1e-9).sum() == 2


def test_float32_prompts_on_a_large_vocabulary():
    scores64 = _large_vocabulary_scores(2, seed=7, positions=20)
    scores32 = PromptLogProbs(scores64.logp.float(), scores64.target)
    reference = exact_weights(scores64, tol=1e-10)
    result = exact_weights(scores32)
    assert result.converged and result.gap <= 1e-5
    assert objective(scores64, result.weights) <= reference.value + 1e-5


def test_floored_and_unnormalised_inputs():
    """log 0 (floored to −1e4: float32 solved in float64), positions whose every log-prob is far below 0 (exp
    without a shift would underflow) and large unnormalised scores (it would overflow): all as autograd says."""
    import blendkit.packllm.weights as weights_module

    scores = _large_vocabulary_scores(2, seed=8)
    logp = scores.logp.clone()
    logp[1, :, 100:] = float("-inf")
    logp[1, :, :100] = torch.log_softmax(logp[1, :, :100], dim=-1)
    target = torch.arange(12)                                             # tokens both members allow
    floored = PromptLogProbs(logp.float(), target)
    result = exact_weights(floored, tol=1e-8)
    reference = exact_weights(PromptLogProbs(logp, target), tol=1e-10)
    assert result.converged and torch.isfinite(result.weights).all()
    assert abs(objective(floored, result.weights) - reference.value) <= 1e-6
    for dtype, shift in ((torch.float64, -800.0), (torch.float64, 800.0), (torch.float32, -150.0),
                         (torch.float32, 100.0)):
        shifted_logp = scores.logp.clone()
        shifted_logp[:, :4] += shift
        shifted = PromptLogProbs(shifted_logp.to(dtype), scores.target)
        point = np.array([0.6, 0.4])
        state = weights_module._Evaluator(shifted)(point)
        value, grad, hess = _autograd(shifted, point)
        assert state.value == pytest.approx(value, rel=1e-6 if dtype == torch.float32 else 1e-12)
        assert np.allclose(state.grad - state.grad.mean(), (grad - grad.mean()).numpy(),
                           atol=1e-4 if dtype == torch.float32 else 1e-10)
        assert np.allclose(_tangent(torch.from_numpy(state.hess)), _tangent(hess),
                           rtol=1e-3 if dtype == torch.float32 else 1e-8)


def test_float32_inputs_with_floored_primary_are_solved_in_float64():
    """Member 0 floored (log 0) on most tokens: in float32, ℓ₀ + λ·(ℓ₁ − ℓ₀) would lose the low digits of ℓ₁
    at the vertex e₁; the solver promotes such inputs to float64, so the gradient there matches autograd."""
    import blendkit.packllm.weights as weights_module

    scores = _large_vocabulary_scores(2, seed=14)
    logp = scores.logp.clone()
    logp[0, :, 50:] = float("-inf")
    logp[0, :, :50] = torch.log_softmax(logp[0, :, :50], dim=-1)
    target = torch.arange(12)
    floored32 = PromptLogProbs(logp.float(), target)
    state = weights_module._Evaluator(floored32)(np.array([0.0, 1.0]))
    _, grad, _ = _autograd(floored32, np.array([0.0, 1.0]))
    assert np.allclose(state.grad - state.grad.mean(), (grad - grad.mean()).numpy(), rtol=0, atol=1e-6)


def test_an_offset_between_members_costs_no_digits_in_float32():
    """Members whose log-probs differ by ~990 nats at every token (an unnormalised member; f does not change, its
    float32 sums would): the certified gap still bounds the true distance to the optimum, computed in float64
    on the same float32 values, for prompts with an interior optimum."""
    for seed in (9, 12, 21, 33):
        generator = np.random.default_rng(seed)
        a, b = generator.normal(size=(1, 5000)), generator.normal(size=(1, 5000))
        mixed = a + 0.025 * b
        q = np.exp(mixed - mixed.max())
        target = int(np.argmin(abs(b[0] - (q / q.sum() * b).sum())))          # an optimum near λ = (0.5, 0.5)
        logp = np.stack([a - 990.0, a + 0.05 * b])
        logp -= logp[1].max()
        scores32 = PromptLogProbs(torch.tensor(logp, dtype=torch.float32), torch.tensor([target]))
        assert scores32.lowest > -1e3                                          # not promoted to float64
        scores64 = PromptLogProbs(scores32.logp.double(), scores32.target)
        result = exact_weights(scores32)
        optimum, a_star = _two_member_optimum(scores64)
        assert result.converged and 0.05 < a_star < 0.95
        assert objective(scores64, result.weights) - optimum <= result.gap + 1e-6


def test_an_evaluator_recomputes_its_kept_differences_after_another_prompt_used_the_buffer():
    """Two evaluators of the same shape share the per-thread buffer: passes of one in between the other's
    must not leave the first reading the second's differences."""
    from blendkit.packllm.weights import _Evaluator

    first, second = (_large_vocabulary_scores(3, seed=s) for s in (20, 21))
    point = np.array([0.2, 0.5, 0.3])
    alone = _Evaluator(first)(point)
    a, b = _Evaluator(first), _Evaluator(second)
    a(point)
    b(point)
    again = a(point)                                   # a's differences were overwritten by b's pass
    assert again.value == alone.value and np.array_equal(again.grad, alone.grad)
    assert np.array_equal(again.hess, alone.hess)


def test_an_evaluator_called_from_another_thread_sees_the_passes_of_its_buffers_thread():
    """The buffer belongs to the thread that built the evaluator: another evaluator's pass there, between two
    calls of the first from a worker thread, must not leave the first reading foreign differences."""
    from concurrent.futures import ThreadPoolExecutor

    from blendkit.packllm.weights import _Evaluator

    first, second = (_large_vocabulary_scores(3, seed=s) for s in (22, 23))
    point = np.array([0.2, 0.5, 0.3])
    alone = _Evaluator(first)(point)
    a, c = _Evaluator(first), _Evaluator(second)
    with ThreadPoolExecutor(1) as worker:
        worker.submit(a, point).result()
        c(point)
        again = worker.submit(a, point).result()
    assert again.value == alone.value and np.array_equal(again.grad, alone.grad)


def test_work_arrays_shared_between_prompts_of_different_shapes():
    """The evaluator's work arrays are reused per thread: solving prompts of other shapes in between changes
    nothing."""
    first = _large_vocabulary_scores(2, seed=10, positions=7)
    alone = exact_weights(first, tol=1e-10)
    for other in (_large_vocabulary_scores(3, seed=11), _large_vocabulary_scores(2, seed=12, vocab=1000),
                  _large_vocabulary_scores(2, seed=13, positions=30)):
        exact_weights(other)
        again = exact_weights(first, tol=1e-10)
        assert torch.equal(again.weights, alone.weights) and again.value == alone.value
        with torch.inference_mode():                # as in generation: the same arrays serve in either mode
            assert torch.equal(exact_weights(first, tol=1e-10).weights, alone.weights)


# -- shrunk weights ---------------------------------------------------------------------------------------------

def test_shrunk_weights_lie_between_the_anchor_and_the_exact_optimum():
    from blendkit.packllm.weights import shrunk_weights

    scores = _random_scores(3, positions=12, vocab=40, seed=9)
    exact = exact_weights(scores)                     # the tolerance shrunk_weights uses
    best = int(np.argmin(scores.member_nll))
    for anchor, vertex in ((None, _vertex(best, 3)), (0, _vertex(0, 3)), (2, _vertex(2, 3))):
        assert torch.allclose(shrunk_weights(scores, move=1.0, anchor=anchor), exact.weights)
        assert torch.equal(shrunk_weights(scores, move=0.0, anchor=anchor), vertex)
        half = shrunk_weights(scores, move=0.5, anchor=anchor)
        assert torch.allclose(half, vertex + 0.5 * (exact.weights - vertex))
        # f falls monotonically along the segment (convexity), and lies below the chord
        values = [objective(scores, w) for w in (vertex, shrunk_weights(scores, move=0.3, anchor=anchor), half,
                                                 exact.weights)]
        assert values == sorted(values, reverse=True)
        assert values[2] <= 0.5 * values[0] + 0.5 * values[3] + 1e-12
    assert torch.equal(shrunk_weights(scores, move=0.0), _vertex(0, 3))       # default anchor: the primary
    with pytest.raises(ValueError, match="move"):
        shrunk_weights(scores, move=1.5)
    with pytest.raises(ValueError, match="anchor"):
        shrunk_weights(scores, anchor=3)
    assert torch.allclose(solve(scores, "shrunk", move=0.5, anchor=None),
                          shrunk_weights(scores, move=0.5, anchor=None).float())


def test_unchecked_inputs_are_vouched_for_by_the_first_pass():
    """The exact solver reads the inputs unchecked; on clean ones its optimistic pass gives what a pass over the
    checked values gives, and log 0, unnormalised or NaN inputs make it start again from the checked values
    (one more pass counted), with the same result as a solve that started there."""
    from blendkit.packllm.weights import _Evaluator, _newton, _Recheck

    scores = _large_vocabulary_scores(3, seed=30, dtype=torch.float32)
    point = np.array([0.2, 0.5, 0.3])
    optimistic = _Evaluator(scores, optimistic=True)(point)
    assert "_range" not in scores.__dict__             # the full check did not run
    checked = _Evaluator(scores)(point)
    assert optimistic.value == checked.value and np.array_equal(optimistic.grad, checked.grad)
    assert np.array_equal(optimistic.hess, checked.hess)

    base = _large_vocabulary_scores(2, seed=31)
    log_zero, low, high, deep = base.logp.clone(), base.logp.clone(), base.logp.clone(), base.logp.clone()
    log_zero[1, :, 200:] = float("-inf")
    log_zero[1, :, :200] = torch.log_softmax(log_zero[1, :, :200], dim=-1)
    low[:, :3] -= 150.0                                  # exp underflows without a shift
    high[:, 5:] += 100.0                                 # and overflows
    deep[:, 0, 0] = torch.tensor([-10300.0, -10200.0])  # an observed token below the floor, the members close
    target = torch.arange(12)
    observed_zero = target.clone()
    observed_zero[4] = 300                               # member 1 says the observed token is impossible
    for logp, target in ((log_zero, target), (log_zero, observed_zero), (low.float(), target),
                         (high.float(), target), (deep, target)):
        scores = PromptLogProbs(logp, target)
        with pytest.raises(_Recheck):
            _newton(_Evaluator(scores, optimistic=True), 1e-8, 50)
        with warnings.catch_warnings():
            warnings.simplefilter("error")               # the optimistic attempt warns of nothing
            result = exact_weights(PromptLogProbs(logp, target), tol=1e-8)
        weights, state, gap, iterations, converged = _newton(_Evaluator(scores), 1e-8, 50)
        assert result.converged and torch.equal(result.weights, torch.from_numpy(weights))
        assert result.value == state.value and result.passes > 1

    other = _large_vocabulary_scores(2, seed=32)        # a recheck leaves no foreign differences behind
    kept = _Evaluator(other)
    first = kept(np.array([0.4, 0.6]))
    with pytest.raises(_Recheck):
        _Evaluator(PromptLogProbs(log_zero, torch.arange(12)), optimistic=True)(np.array([0.4, 0.6]))
    again = kept(np.array([0.4, 0.6]))
    assert again.value == first.value and np.array_equal(again.grad, first.grad)

"""Weight solvers on synthetic log-probs: simplex, optimality order, the certified gap, the support bound."""

from __future__ import annotations

import itertools

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
    assert result.gap <= 1e-9 or result.decrement <= 1e-11          # the documented stopping rule
    assert result.value <= best + 1e-12                    # no grid point beats it
    assert result.value >= best - 1e-3                     # and the grid (step 0.01) gets close to it


def test_exact_reports_a_valid_gap_and_obeys_the_tolerance():
    scores = _random_scores(4, positions=20, vocab=50, seed=11)
    loose = exact_weights(scores, tol=1e-2)
    tight = exact_weights(scores, tol=1e-10)
    assert tight.gap <= 1e-10 or tight.decrement <= 1e-12
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
    logp[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        PromptLogProbs(logp)
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


# -- the screened solver on a large vocabulary --------------------------------------------------------------

def _large_vocabulary_scores(members: int, seed: int, positions: int = 12, vocab: int = 4096,
                             dtype=torch.float64) -> PromptLogProbs:
    """Peaky distributions over a vocabulary large enough to be screened (most tokens far below the top)."""
    generator = torch.Generator().manual_seed(seed)
    shared = torch.randn(1, positions, vocab, generator=generator) * 5
    own = torch.randn(members, positions, vocab, generator=generator) * 2
    logp = torch.log_softmax((shared + own).double(), dim=-1)
    target = torch.randint(0, vocab, (positions,), generator=generator)
    return PromptLogProbs(logp.to(dtype), target)


def _whole_vocabulary_gap(scores: PromptLogProbs, weights: torch.Tensor) -> float:
    """The Frank–Wolfe gap recomputed independently: ∇f by autograd of the plain objective in float64."""
    lam = weights.detach().double().clone().requires_grad_(True)
    logp = scores.logp.double()
    mixed = torch.einsum("k,kts->ts", lam, logp)
    observed = logp[:, torch.arange(logp.shape[1]), scores.target]
    value = (torch.logsumexp(mixed, dim=1) - lam @ observed).mean()
    (grad,) = torch.autograd.grad(value, lam)
    return float(grad @ lam.detach() - grad.min())


@pytest.mark.parametrize("members,seed", [(2, 0), (2, 1), (3, 2), (4, 3)])
def test_screened_solver_is_certified_on_the_whole_vocabulary(members, seed):
    scores = _large_vocabulary_scores(members, seed)
    result = exact_weights(scores, tol=1e-8)
    assert 0 < result.screened_support < 0.25 * 4096                     # the screen was used, and cut a lot
    assert result.converged and (result.gap <= 1e-8 or result.decrement <= 1e-10)
    # the reported gap is the whole vocabulary's, not the screened bound's
    assert result.gap == pytest.approx(_whole_vocabulary_gap(scores, result.weights), abs=1e-9)
    assert objective(scores, result.weights) == pytest.approx(result.value, abs=1e-12)
    assert result.member_values == pytest.approx(scores.member_nll, abs=1e-9)   # exact at the vertices


@pytest.mark.parametrize("members,seed", [(2, 4), (3, 5), (5, 6)])
def test_screened_and_unscreened_solvers_find_the_same_optimum(members, seed):
    scores = _large_vocabulary_scores(members, seed)
    screened = exact_weights(scores, tol=1e-9)
    whole = exact_weights(scores, tol=1e-9, screen_margin=None)
    assert whole.screened_support == 0 and whole.screened_iterations == 0
    assert abs(screened.value - whole.value) <= 1e-9
    assert torch.allclose(screened.weights, whole.weights, atol=1e-4)
    vertices = [objective(scores, _vertex(k, members)) for k in range(members)]
    assert screened.value <= min(vertices) + 1e-12


def test_screened_solver_on_float32_inputs_and_a_tight_margin():
    scores64 = _large_vocabulary_scores(2, seed=7, positions=20)
    scores32 = PromptLogProbs(scores64.logp.float(), scores64.target)
    reference = exact_weights(scores64, tol=1e-10, screen_margin=None)
    for margin in (2.0, 10.0):        # a tight screen gives a worse start, never a worse answer
        result = exact_weights(scores32, screen_margin=margin)
        assert result.converged
        assert objective(scores64, result.weights) <= reference.value + 1e-5
    with pytest.raises(ValueError, match="screen_margin"):
        exact_weights(scores64, screen_margin=0)


def test_floored_members_are_screened_safely():
    """A member that gives most tokens log 0 (floored to −1e4): exp must neither underflow to an empty sum nor
    lose the certificate."""
    scores = _large_vocabulary_scores(2, seed=8)
    logp = scores.logp.clone()
    logp[1, :, 100:] = float("-inf")
    logp[1, :, :100] = torch.log_softmax(logp[1, :, :100], dim=-1)
    target = torch.arange(12)                                             # tokens both members allow
    floored = PromptLogProbs(logp, target)
    result = exact_weights(floored, tol=1e-8)
    whole = exact_weights(floored, tol=1e-8, screen_margin=None)
    assert result.converged and torch.isfinite(result.weights).all()
    assert abs(result.value - whole.value) <= 1e-8


# -- shrunk weights ---------------------------------------------------------------------------------------------

def test_shrunk_weights_lie_between_the_anchor_and_the_exact_optimum():
    from blendkit.packllm.weights import shrunk_weights

    scores = _random_scores(3, positions=12, vocab=40, seed=9)
    exact = exact_weights(scores, tol=1e-10)
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

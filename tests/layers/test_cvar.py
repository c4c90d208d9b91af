"""CVaR sample-average decision: HiGHS reference, CVaR identity, gradients vs finite
differences, tail_prob = 1, weights, jit/vmap, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linprog

from tailjax.layers import cvar_decision, grid_arcs, make_polytope, point_decision
from tailjax.risk import cvar


def _flow_polytope(dtype=np.float64):
    arcs = grid_arcs(3, 3)
    A = np.zeros((9, len(arcs)))
    for k, (u, v) in enumerate(arcs):
        A[u, k], A[v, k] = 1.0, -1.0
    b = np.zeros(9)
    b[0], b[-1] = 1.0, -1.0
    d = len(arcs)
    return make_polytope(np.zeros(d, dtype), np.ones(d, dtype), A[:-1].astype(dtype), b[:-1].astype(dtype)), A, b


def _highs_cvar(C, A_eq, b_eq, A_ub, b_ub, alpha):
    K, d = C.shape
    cost = np.concatenate([np.zeros(d), [1.0], np.full(K, 1 / (alpha * K))])
    rows = [np.hstack([C, -np.ones((K, 1)), -np.eye(K)])]
    rhs = [np.zeros(K)]
    if A_ub is not None:
        rows.append(np.hstack([A_ub, np.zeros((A_ub.shape[0], 1 + K))]))
        rhs.append(b_ub)
    eq = None if A_eq is None else np.hstack([A_eq, np.zeros((A_eq.shape[0], 1 + K))])
    bounds = [(0, 1)] * d + [(None, None)] + [(0, None)] * K
    return linprog(cost, A_ub=np.vstack(rows), b_ub=np.concatenate(rhs), A_eq=eq, b_eq=b_eq,
                   bounds=bounds, method="highs").fun


@pytest.mark.parametrize("alpha", [0.05, 0.3, 0.75])
def test_shortest_path_cvar_matches_highs(x64, alpha):
    poly, A, b = _flow_polytope()
    C = np.random.default_rng(0).uniform(0.5, 1.5, (20, 12))
    w, info = cvar_decision(C, poly, alpha, return_info=True)
    ref = _highs_cvar(C, A[:-1], b[:-1], None, None, alpha)
    assert bool(info.converged)
    assert abs(float(info.objective) - ref) <= 1e-5 * abs(ref)
    # the objective is the empirical CVaR of the decision's costs
    np.testing.assert_allclose(float(cvar(C @ w, alpha)), ref, rtol=1e-6)


@pytest.mark.slow  # fast suite: the float32 layer against HiGHS in test_scaling.py
def test_float32_objective_gap():
    poly, A, b = _flow_polytope(np.float32)
    C = np.random.default_rng(1).uniform(0.5, 1.5, (20, 12)).astype(np.float32)
    _, info = cvar_decision(C, poly, 0.2, return_info=True)
    with jax.enable_x64(True):
        ref = _highs_cvar(C.astype(np.float64), A[:-1], b[:-1], None, None, 0.2)
    assert bool(info.converged)
    assert abs(float(info.objective) - ref) <= 1e-5 * abs(ref)


def test_portfolio_cvar_with_quadratic_term_is_optimal(x64):
    # No SAA reference solver for the QP here: check that the returned objective is the
    # CVaR + quadratic value of w and that no feasible perturbation improves it.
    rng = np.random.default_rng(2)
    d, K = 12, 20
    poly = make_polytope(np.zeros(d), np.ones(d), ineq_matrix=np.ones((1, d)), ineq_rhs=[1.0])
    L = rng.normal(size=(d, d)) * 0.1
    P = L @ L.T
    C = -rng.normal(0.3, 0.3, (K, d))
    w, info = cvar_decision(C, poly, 0.2, quadratic=P, return_info=True)

    def obj(v):
        return float(cvar(C @ v, 0.2)) + float(v @ P @ v)

    best = obj(np.asarray(w))
    assert best < -0.05  # investing beats the empty portfolio here
    np.testing.assert_allclose(best, float(info.objective), rtol=1e-7)
    for _ in range(200):
        v = np.clip(np.asarray(w) + 0.05 * rng.normal(size=d), 0, 1)
        v = v / max(1.0, v.sum())
        assert obj(v) >= best - 1e-9


def test_gradient_matches_finite_differences(x64):
    rng = np.random.default_rng(1)
    K, d = 20, 12
    poly = make_polytope(np.zeros(d), np.ones(d), ineq_matrix=rng.uniform(1, 2, (1, d)), ineq_rhs=[5.0])
    C = rng.normal(size=(K, d)) - 0.3
    weights = jnp.sin(jnp.arange(d).astype(jnp.float64))

    def f(C):
        return weights @ cvar_decision(C, poly, 0.23, reg=0.5)

    g = jax.grad(f)(jnp.asarray(C))
    eps = 1e-6
    for i, j in [(3, 2), (5, 5), (0, 0), (9, 1)]:
        E = np.zeros_like(C)
        E[i, j] = eps
        fd = (f(C + E) - f(C - E)) / (2 * eps)
        assert abs(float(g[i, j]) - float(fd)) <= 1e-5 * (1 + abs(float(fd)))


def test_tail_prob_one_is_mean_decision(x64):
    poly, _, _ = _flow_polytope()
    C = np.random.default_rng(4).uniform(0.5, 1.5, (20, 12))
    w = cvar_decision(C, poly, 1.0, reg=0.1)
    w_mean = point_decision(C.mean(0), poly, reg=0.1)
    np.testing.assert_allclose(w, w_mean, atol=1e-7)


def test_single_sample_equals_point_decision(x64):
    poly, _, _ = _flow_polytope()
    c = np.random.default_rng(5).uniform(0.5, 1.5, 12)
    np.testing.assert_allclose(cvar_decision(c[None], poly, 0.3, reg=0.2), point_decision(c, poly, reg=0.2), atol=1e-6)


def test_weights_equal_repeated_samples(x64):
    poly, _, _ = _flow_polytope()
    C = np.random.default_rng(6).uniform(0.5, 1.5, (10, 12))
    counts = np.array([1, 3, 2, 2, 1, 3, 2, 2, 3, 1])
    repeated = np.repeat(C, counts, axis=0)
    w_rep = cvar_decision(repeated, poly, 0.3, reg=0.1)
    w_wt = cvar_decision(C, poly, 0.3, reg=0.1, weights=counts.astype(np.float64))
    np.testing.assert_allclose(w_rep, w_wt, atol=1e-6)


@pytest.mark.slow  # fast suite: jit+vmap in test_scaling.py, gradients by finite differences above
def test_jit_vmap_and_grad_under_vmap():
    poly, _, _ = _flow_polytope(np.float32)
    C = jnp.asarray(np.random.default_rng(7).uniform(0.5, 1.5, (3, 20, 12)), jnp.float32)
    f = jax.jit(jax.vmap(lambda c: cvar_decision(c, poly, 0.2, reg=0.1)))
    W = f(C)
    for i in range(3):
        np.testing.assert_allclose(W[i], cvar_decision(C[i], poly, 0.2, reg=0.1), atol=2e-4)
    g = jax.jit(jax.grad(lambda C: jnp.sum(jax.vmap(lambda c: cvar_decision(c, poly, 0.2, reg=0.1))(C) ** 2)))(C)
    assert g.shape == C.shape and bool(jnp.all(jnp.isfinite(g)))


def test_bad_input():
    poly, _, _ = _flow_polytope(np.float32)
    C = np.ones((4, 12), np.float32)
    with pytest.raises(ValueError, match="tail_prob"):
        cvar_decision(C, poly, 0.0)
    with pytest.raises(ValueError, match="tail_prob"):
        cvar_decision(C, poly, 1.5)
    with pytest.raises(ValueError, match="K = 0"):
        cvar_decision(np.ones((0, 12), np.float32), poly, 0.5)
    with pytest.raises(ValueError, match="polytope"):
        cvar_decision(np.ones((4, 7), np.float32), poly, 0.5)
    with pytest.raises(ValueError, match="weights"):
        cvar_decision(C, poly, 0.5, weights=np.ones(3))
    with pytest.raises(ValueError, match="reg"):
        cvar_decision(C, poly, 0.5, reg=-1.0)
    with pytest.raises(ValueError, match="quadratic"):
        cvar_decision(C, poly, 0.5, quadratic=np.eye(3))


def test_concrete_weights_inside_a_users_jit_are_checked_not_traced():
    # The weights check ran jnp ops on a closed-over array inside jit: a tracer, and a
    # TracerBoolConversionError instead of a decision.
    d, K = 3, 16
    poly = make_polytope(np.zeros(d), np.ones(d), ineq_matrix=np.ones((1, d)), ineq_rhs=[1.0])
    C = jnp.asarray(np.random.default_rng(0).normal(size=(K, d)), jnp.float32)
    weights = jnp.linspace(0.5, 1.5, K)
    inside = jax.jit(lambda c: cvar_decision(c, poly, 0.2, reg=0.1, weights=weights))(C)
    outside = cvar_decision(C, poly, 0.2, reg=0.1, weights=weights)
    np.testing.assert_allclose(inside, outside, atol=1e-5)
    negative = -weights
    with pytest.raises(ValueError, match="weights"):
        jax.jit(lambda c: cvar_decision(c, poly, 0.2, weights=negative))(C)


def test_bad_weights_never_give_a_finite_decision():
    d, K = 3, 16
    poly = make_polytope(np.zeros(d), np.ones(d), ineq_matrix=np.ones((1, d)), ineq_rhs=[1.0])
    C = jnp.asarray(np.random.default_rng(1).normal(size=(K, d)), jnp.float32)
    weights = jnp.linspace(0.5, 1.5, K)
    negative = weights.at[0].set(-5.0)
    # tail_prob = 1 (the mean decision) with traced negative weights used to return a point
    w, info = jax.jit(lambda v: cvar_decision(C, poly, 1.0, weights=v, return_info=True))(negative)
    assert np.all(np.isnan(np.asarray(w))) and np.isnan(float(info.objective))
    assert np.all(np.isfinite(np.asarray(jax.jit(lambda v: cvar_decision(C, poly, 1.0, weights=v))(weights))))
    with pytest.raises(ValueError, match="weights"):  # concrete NaN weights gave a NaN decision
        cvar_decision(C, poly, 0.2, weights=weights.at[0].set(jnp.nan))
    with pytest.raises(ValueError, match="tail_prob"):  # a traced vector level: a jax shape error
        jax.jit(lambda t: cvar_decision(C, poly, t))(jnp.array([0.2, 0.3]))

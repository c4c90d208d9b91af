"""solve_qp against scipy HiGHS (LPs) and a closed-form QP; implicit gradients vs finite
differences; jit and vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linprog

from tailjax.layers import solve_lp, solve_qp


def _random_lp(rng, n=8):
    c = rng.normal(size=n)
    a = rng.uniform(size=(2, n))
    G = np.vstack([np.eye(n), -np.eye(n), a])
    h = np.concatenate([np.ones(n), np.zeros(n), [2.0, 2.5]])
    return c, np.ones((1, n)), np.array([3.0]), G, h


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lp_matches_highs(x64, seed):
    c, A, b, G, h = _random_lp(np.random.default_rng(seed))
    n = c.shape[0]
    sol = solve_qp(np.zeros((n, n)), c, A, b, G, h)
    ref = linprog(c, A_ub=G, b_ub=h, A_eq=A, b_eq=b, method="highs")
    assert bool(sol.converged)
    assert abs(float(c @ sol.primal) - ref.fun) <= 1e-5 * abs(ref.fun)
    assert np.all(np.asarray(sol.slack) >= -1e-8)


def test_qp_closed_form_projection(x64):
    # min ||x - t||^2 over the box [0, 1]^n: the clip of t.
    t = np.array([-0.5, 0.3, 1.7, 0.9])
    n = t.shape[0]
    G = np.vstack([np.eye(n), -np.eye(n)])
    h = np.concatenate([np.ones(n), np.zeros(n)])
    sol = solve_qp(2 * np.eye(n), -2 * t, np.zeros((0, n)), np.zeros(0), G, h)
    np.testing.assert_allclose(sol.primal, np.clip(t, 0, 1), atol=1e-7)


def test_gradient_matches_finite_differences(x64):
    rng = np.random.default_rng(0)
    n = 6
    M = rng.normal(size=(n, n))
    Q = M @ M.T + 0.1 * np.eye(n)
    q = rng.normal(size=n)
    G = np.vstack([np.eye(n), -np.eye(n), rng.normal(size=(3, n))])
    h = np.concatenate([np.full(2 * n, 0.3), np.full(3, 0.1)])
    A, b = np.ones((1, n)), np.array([0.2])
    weights = jnp.cos(jnp.arange(n).astype(jnp.float64))

    def f(q, h):
        return weights @ solve_qp(Q, q, A, b, G, h).primal

    gq, gh = jax.grad(f, argnums=(0, 1))(jnp.asarray(q), jnp.asarray(h))
    eps = 1e-6
    for i in range(n):
        e = np.zeros(n)
        e[i] = eps
        fd = (f(q + e, h) - f(q - e, h)) / (2 * eps)
        assert abs(float(gq[i]) - float(fd)) <= 1e-5 * (1 + abs(float(fd)))
    for i in (0, 2 * n):
        e = np.zeros(h.shape[0])
        e[i] = eps
        fd = (f(q, h + e) - f(q, h - e)) / (2 * eps)
        assert abs(float(gh[i]) - float(fd)) <= 1e-5 * (1 + abs(float(fd)))


def test_jit_and_vmap_match_loop():
    rng = np.random.default_rng(3)
    c, A, b, G, h = _random_lp(rng)
    n = c.shape[0]
    cs = jnp.asarray(rng.normal(size=(4, n)), jnp.float32)
    batched = jax.jit(jax.vmap(lambda cc: solve_qp(jnp.zeros((n, n)), cc, A, b, G, h).primal))(cs)
    for i in range(4):
        single = solve_qp(np.zeros((n, n)), cs[i], A, b, G, h).primal
        np.testing.assert_allclose(batched[i], single, atol=1e-4)


def test_no_equality_may_be_given_as_none_as_in_solve_lp(x64):
    # min ||x - t||^2 over the box [0, 1]^n; None used to raise inside jnp.asarray
    t = np.array([-0.5, 0.3, 1.7, 0.9])
    n = t.shape[0]
    G = np.vstack([np.eye(n), -np.eye(n)])
    h = np.concatenate([np.ones(n), np.zeros(n)])
    sol = solve_qp(2 * np.eye(n), -2 * t, None, None, G, h)
    ref = solve_qp(2 * np.eye(n), -2 * t, np.zeros((0, n)), np.zeros(0), G, h)
    np.testing.assert_array_equal(sol.primal, ref.primal)
    assert sol.eq_dual.shape == (0,) and bool(sol.converged)
    lp = solve_lp(-t, None, None, G, h)
    np.testing.assert_allclose(solve_qp(np.zeros((n, n)), -t, None, None, G, h).primal, lp.primal, atol=1e-7)
    with pytest.raises(ValueError, match="eq_rhs"):
        solve_qp(2 * np.eye(n), -2 * t, None, np.ones(1), G, h)


def test_infeasible_reports_not_converged():
    n = 3
    G = np.vstack([np.eye(n), -np.eye(n)])
    h = np.concatenate([np.ones(n), np.zeros(n)])
    sol = solve_qp(np.zeros((n, n)), np.ones(n), np.ones((1, n)), np.array([5.0]), G, h)
    assert not bool(sol.converged)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(quad=np.zeros((2, 2))), "quad"),
        (dict(eq_rhs=np.zeros(2)), "eq_rhs"),
        (dict(ineq_matrix=np.zeros((6, 4))), "ineq_matrix"),
        (dict(iterations=0), "iterations"),
        (dict(iterations=2.5), "iterations"),  # was truncated to 2
        (dict(quad=None), "quad"),
        (dict(tol=-1.0), "tol"),
    ],
)
def test_bad_input_names_argument(kwargs, name):
    n = 3
    args = dict(
        quad=np.zeros((n, n)), lin=np.ones(n), eq_matrix=np.ones((1, n)), eq_rhs=np.ones(1),
        ineq_matrix=np.vstack([np.eye(n), -np.eye(n)]), ineq_rhs=np.ones(2 * n),
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        solve_qp(**args)

"""The JAX interior-point LP/QP solver against HiGHS, closed forms and finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linprog

from tailjax.stochopt import lp_value, solve_lp, solve_qp


def _random_lps(seed, num, n=6, m=12):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(num):
        G = rng.normal(size=(m, n))
        x0 = rng.normal(size=n)
        h = G @ x0 + rng.uniform(0.1, 1.0, m)
        G = np.vstack([G, np.eye(n), -np.eye(n)])
        h = np.concatenate([h, np.full(n, 4.0), np.full(n, 4.0)])
        A = rng.normal(size=(2, n))
        out.append((rng.normal(size=n), G, h, A, A @ x0))
    return [np.stack(a) for a in zip(*out)]


def test_lp_matches_highs_under_vmap(x64):
    c, G, h, A, b = _random_lps(0, 16)
    sols = jax.jit(jax.vmap(solve_lp))(c, G, h, A, b)
    assert bool(jnp.all(sols.converged))
    for i in range(16):
        ref = linprog(c[i], A_ub=G[i], b_ub=h[i], A_eq=A[i], b_eq=b[i], bounds=[(None, None)] * 6, method="highs")
        assert float(sols.objective[i]) == pytest.approx(ref.fun, rel=1e-8, abs=1e-8)
        assert np.all(G[i] @ np.asarray(sols.x[i]) <= h[i] + 1e-7)
        assert np.all(np.asarray(sols.z[i]) >= -1e-12)


def test_lp_float32_is_accurate_to_single_precision():
    c, G, h, A, b = _random_lps(1, 4)
    sols = jax.jit(jax.vmap(solve_lp))(*(jnp.asarray(a, jnp.float32) for a in (c, G, h, A, b)))
    for i in range(4):
        ref = linprog(c[i], A_ub=G[i], b_ub=h[i], A_eq=A[i], b_eq=b[i], bounds=[(None, None)] * 6, method="highs")
        assert float(sols.objective[i]) == pytest.approx(ref.fun, rel=1e-3, abs=1e-3)


def test_qp_projection_onto_box_and_simplex(x64):
    y = jnp.array([1.5, -0.2, 0.3, 0.9])
    qp = jax.jit(solve_qp)
    # box as a QP (with an inactive equality row so that both calls share one program)
    G = jnp.concatenate([jnp.eye(4), -jnp.eye(4)])
    h = jnp.concatenate([jnp.full(4, 0.5), jnp.zeros(4)])
    box = jnp.array([[1.0, 0.0, 0.0, 0.0]])
    sol = qp(jnp.eye(4), -y, G, h, box, jnp.array([0.5]))
    np.testing.assert_allclose(sol.x, jnp.clip(y, 0.0, 0.5), atol=1e-8)
    G2 = jnp.concatenate([-jnp.eye(4), jnp.eye(4)])
    h2 = jnp.concatenate([jnp.zeros(4), jnp.ones(4)])
    sol = qp(jnp.eye(4), -y, G2, h2, jnp.ones((1, 4)), jnp.ones(1))
    np.testing.assert_allclose(sol.x, [0.8, 0.0, 0.0, 0.2], atol=1e-8)


def test_lp_value_gradient_matches_finite_differences(x64):
    # min c^T x over {x >= 0, sum x <= r, x_1 <= q}: piecewise linear in (c, r, q)
    def value(params):
        c, r, q = params[:3], params[3], params[4]
        G = jnp.concatenate([-jnp.eye(3), jnp.ones((1, 3)), jnp.array([[1.0, 0.0, 0.0]])])
        h = jnp.concatenate([jnp.zeros(3), jnp.stack([r, q])])
        return lp_value(c, G, h)

    p = jnp.array([-2.0, -1.0, 0.5, 3.0, 1.0])
    grad = jax.jit(jax.grad(value))(p)
    value = jax.jit(value)
    eps = 1e-5
    fd = np.array([(value(p.at[i].add(eps)) - value(p.at[i].add(-eps))) / (2 * eps) for i in range(5)])
    np.testing.assert_allclose(grad, fd, atol=1e-5)
    # analytic: x* = (1, 2, 0): dV/dc = x*, dV/dr = -1 (the budget's dual), dV/dq = -1
    np.testing.assert_allclose(grad, [1.0, 2.0, 0.0, -1.0, -1.0], atol=1e-6)


def test_bad_shapes():
    with pytest.raises(ValueError, match="G must be"):
        solve_lp(jnp.ones(3), jnp.ones((2, 4)), jnp.ones(2))
    with pytest.raises(ValueError, match="A must be"):
        solve_lp(jnp.ones(3), jnp.ones((2, 3)), jnp.ones(2), jnp.ones((1, 2)), jnp.ones(1))
    with pytest.raises(ValueError, match="P must"):
        solve_qp(jnp.ones((2, 2)), jnp.ones(3), jnp.ones((2, 3)), jnp.ones(2))

"""solve_lp and lp_value (the layers interior-point engine with Q = 0) against HiGHS,
closed forms and finite differences; solve_qp as a projection."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linprog

from tailjax.layers import lp_value, solve_lp, solve_qp


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
        out.append((rng.normal(size=n), A, A @ x0, G, h))
    return [np.stack(a) for a in zip(*out)]


def _highs(c, A, b, G, h):
    return linprog(c, A_ub=G, b_ub=h, A_eq=A, b_eq=b, bounds=[(None, None)] * c.shape[0], method="highs")


def test_lp_matches_highs_under_vmap(x64):
    c, A, b, G, h = _random_lps(0, 16)
    sols = jax.jit(jax.vmap(solve_lp))(c, A, b, G, h)
    values = jax.jit(jax.vmap(lp_value))(c, A, b, G, h)
    assert bool(jnp.all(sols.converged))
    for i in range(16):
        ref = _highs(c[i], A[i], b[i], G[i], h[i])
        assert float(c[i] @ np.asarray(sols.primal[i])) == pytest.approx(ref.fun, rel=1e-8, abs=1e-8)
        assert float(values[i]) == pytest.approx(ref.fun, rel=1e-8, abs=1e-8)
        assert np.all(G[i] @ np.asarray(sols.primal[i]) <= h[i] + 1e-7)
        assert np.all(np.asarray(sols.ineq_dual[i]) >= -1e-12)


def test_lp_float32_is_accurate_to_single_precision():
    c, A, b, G, h = _random_lps(1, 4)
    sols = jax.jit(jax.vmap(solve_lp))(*(jnp.asarray(a, jnp.float32) for a in (c, A, b, G, h)))
    for i in range(4):
        ref = _highs(c[i], A[i], b[i], G[i], h[i])
        assert float(c[i] @ np.asarray(sols.primal[i], np.float64)) == pytest.approx(ref.fun, rel=1e-3, abs=1e-3)


def test_qp_projection_onto_box_and_simplex(x64):
    y = jnp.array([1.5, -0.2, 0.3, 0.9])
    qp = jax.jit(solve_qp)
    # box as a QP (with an inactive equality row so that both calls share one program)
    G = jnp.concatenate([jnp.eye(4), -jnp.eye(4)])
    h = jnp.concatenate([jnp.full(4, 0.5), jnp.zeros(4)])
    box = jnp.array([[1.0, 0.0, 0.0, 0.0]])
    sol = qp(jnp.eye(4), -y, box, jnp.array([0.5]), G, h)
    np.testing.assert_allclose(sol.primal, jnp.clip(y, 0.0, 0.5), atol=1e-8)
    G2 = jnp.concatenate([-jnp.eye(4), jnp.eye(4)])
    h2 = jnp.concatenate([jnp.zeros(4), jnp.ones(4)])
    sol = qp(jnp.eye(4), -y, jnp.ones((1, 4)), jnp.ones(1), G2, h2)
    np.testing.assert_allclose(sol.primal, [0.8, 0.0, 0.0, 0.2], atol=1e-8)


def _budget_lp(params):
    # min c^T x over {x >= 0, sum x <= r, x_1 <= q}: piecewise linear in (c, r, q)
    c, r, q = params[:3], params[3], params[4]
    G = jnp.concatenate([-jnp.eye(3), jnp.ones((1, 3)), jnp.array([[1.0, 0.0, 0.0]])])
    h = jnp.concatenate([jnp.zeros(3), jnp.stack([r, q])])
    return c, G, h


def test_lp_value_gradient_matches_finite_differences(x64):
    def value(params):
        c, G, h = _budget_lp(params)
        return lp_value(c, None, None, G, h)

    p = jnp.array([-2.0, -1.0, 0.5, 3.0, 1.0])
    grad = jax.jit(jax.grad(value))(p)
    value = jax.jit(value)
    eps = 1e-5
    fd = np.array([(value(p.at[i].add(eps)) - value(p.at[i].add(-eps))) / (2 * eps) for i in range(5)])
    np.testing.assert_allclose(grad, fd, atol=1e-5)
    # analytic: x* = (1, 2, 0): dV/dc = x*, dV/dr = -1 (the budget's dual), dV/dq = -1
    np.testing.assert_allclose(grad, [1.0, 2.0, 0.0, -1.0, -1.0], atol=1e-6)


def test_lp_value_jvp_is_the_envelope_formula(x64):
    # dV = dc^T x* + z*^T (dG x* - dh) + y*^T (dA x* - db), in every argument at once
    c, A, b, G, h = (jnp.asarray(a[0]) for a in _random_lps(2, 1))
    rng = np.random.default_rng(5)
    tangents = tuple(jnp.asarray(rng.normal(size=a.shape)) for a in (c, A, b, G, h))
    value, dv = jax.jvp(lp_value, (c, A, b, G, h), tangents)
    sol = solve_lp(c, A, b, G, h)
    dc, dA, db, dG, dh = tangents
    x, y, z = sol.primal, sol.eq_dual, sol.ineq_dual
    expected = dc @ x + z @ (dG @ x - dh) + y @ (dA @ x - db)
    assert float(value) == pytest.approx(float(c @ x), rel=1e-12)
    assert float(dv) == pytest.approx(float(expected), rel=1e-10)
    eps = 1e-6
    shifted = [a + eps * t for a, t in zip((c, A, b, G, h), tangents)]
    back = [a - eps * t for a, t in zip((c, A, b, G, h), tangents)]
    fd = (lp_value(*shifted) - lp_value(*back)) / (2 * eps)
    assert float(dv) == pytest.approx(float(fd), rel=1e-4)


def test_lp_value_of_an_infeasible_lp_is_nan_not_a_number():
    # x >= 0 and x1 + x2 <= -1: no feasible point; lp_value used to return -0.67 silently
    c, G, h = jnp.ones(2), jnp.array([[-1.0, 0.0], [0.0, -1.0], [1.0, 1.0]]), jnp.array([0.0, 0.0, -1.0])
    assert np.isnan(float(lp_value(c, None, None, G, h)))
    values = jax.jit(jax.vmap(lambda hh: lp_value(-c, None, None, G, hh)))(jnp.stack([h, -h]))
    assert np.isnan(float(values[0])) and float(values[1]) == pytest.approx(-1.0, abs=1e-4)
    assert np.isfinite(float(lp_value(c, None, None, G, h, on_failure="ignore")))
    with pytest.raises(Exception, match="lp_value: the interior-point solver did not converge"):
        lp_value(c, None, None, G, h, on_failure="raise")
    with pytest.raises(ValueError, match="on_failure"):
        lp_value(c, None, None, G, h, on_failure=None)


def test_bad_shapes():
    with pytest.raises(ValueError, match="ineq_matrix"):
        solve_lp(jnp.ones(3), None, None, jnp.ones((2, 4)), jnp.ones(2))
    with pytest.raises(ValueError, match="eq_matrix"):
        solve_lp(jnp.ones(3), jnp.ones((1, 2)), jnp.ones(1), jnp.ones((2, 3)), jnp.ones(2))
    with pytest.raises(ValueError, match="quad"):
        solve_qp(jnp.ones((2, 2)), jnp.ones(3), jnp.zeros((0, 3)), jnp.zeros(0), jnp.ones((2, 3)), jnp.ones(2))
    with pytest.raises(ValueError, match="lin"):
        lp_value(jnp.ones((3, 3)), None, None, jnp.ones((2, 3)), jnp.ones(2))

"""Decision sets: projections (variational inequality over the vertices), LMOs vs HiGHS."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linprog

from tailjax.stochopt import Box, CappedSimplex, Simplex, TargetReturnSimplex, project_simplex

MU = np.array([0.5, 0.8, 1.0, 1.2, 1.5])


def _vertices(theta_set, d):
    """Vertices of the polytope by brute force over active-constraint sets (small d)."""
    G, h, A, b = (np.asarray(a, np.float64) for a in theta_set.constraints(jnp.float64))
    verts = []
    for rows in itertools.combinations(range(G.shape[0]), d - A.shape[0]):
        M = np.vstack([A, G[list(rows)]])
        rhs = np.concatenate([b, h[list(rows)]])
        if np.linalg.matrix_rank(M) < d:
            continue
        v = np.linalg.solve(M, rhs)
        if np.all(G @ v <= h + 1e-9) and np.allclose(A @ v, b):
            verts.append(v)
    return np.array(verts)


def _sets():
    return [
        Simplex(5, 1.0),
        CappedSimplex(5, 2.0),
        Box(jnp.asarray([-1.0, 0.0, 0.5, -2.0, 0.0]), jnp.asarray([1.0, 0.5, 2.0, 0.0, 3.0])),
        TargetReturnSimplex(jnp.asarray(MU), 1.25),
    ]


@pytest.mark.parametrize("idx", range(4))
def test_projection_variational_inequality(idx, x64):
    theta_set = _sets()[idx]
    verts = _vertices(theta_set, 5)
    G, h, A, b = (np.asarray(a) for a in theta_set.constraints(jnp.float64))
    ys = 2.0 * jax.random.normal(jax.random.PRNGKey(idx), (50, 5), jnp.float64)
    project = jax.jit(jax.vmap(theta_set.project))
    ps = np.asarray(project(ys))
    for y, p in zip(np.asarray(ys), ps):
        assert np.all(G @ p <= h + 1e-9)
        np.testing.assert_allclose(A @ p, b, atol=1e-9)
        # p = Proj(y)  <=>  (y - p)^T (v - p) <= 0 for every v in the set (vertices suffice)
        assert np.max((verts - p) @ (y - p)) <= 1e-8
    np.testing.assert_allclose(project(jnp.asarray(ps)), ps, atol=1e-9)


@pytest.mark.parametrize("idx", range(4))
def test_lmo_matches_highs(idx, x64):
    theta_set = _sets()[idx]
    G, h, A, b = (np.asarray(a) for a in theta_set.constraints(jnp.float64))
    cs = jax.random.normal(jax.random.PRNGKey(10 + idx), (30, 5), jnp.float64)
    xs, vals = jax.jit(jax.vmap(theta_set.lmo))(cs)
    for c, x, v in zip(np.asarray(cs), np.asarray(xs), np.asarray(vals)):
        ref = linprog(c, A_ub=G, b_ub=h, A_eq=A if A.shape[0] else None, b_eq=b if A.shape[0] else None,
                      bounds=[(None, None)] * 5, method="highs")
        assert v == pytest.approx(ref.fun, abs=1e-9)
        assert c @ x == pytest.approx(v, abs=1e-9)
        assert np.all(G @ x <= h + 1e-9)


def test_feasible_points_and_simplex_projection(dtype):
    for theta_set in _sets():
        x = theta_set.feasible_point(dtype)
        assert x.dtype == dtype
        G, h, A, b = theta_set.constraints(dtype)
        assert bool(jnp.all(G @ x <= h + 1e-6))
    p = project_simplex(jnp.array([0.2, 0.9, -0.3], dtype))
    np.testing.assert_allclose(p, [0.15, 0.85, 0.0], atol=1e-6)


def test_bad_sets():
    with pytest.raises(ValueError, match="dim"):
        Simplex(0)
    with pytest.raises(ValueError, match="radius"):
        CappedSimplex(3, -1.0)
    with pytest.raises(ValueError, match="lower"):
        Box(jnp.ones(2), jnp.zeros(2))
    with pytest.raises(ValueError, match="target"):
        TargetReturnSimplex(jnp.asarray(MU), 2.0)
    with pytest.raises(ValueError, match="target"):
        TargetReturnSimplex(jnp.asarray(MU), float("nan"))
    with pytest.raises(ValueError, match="mu"):
        TargetReturnSimplex(jnp.ones((2, 2)), 0.5)

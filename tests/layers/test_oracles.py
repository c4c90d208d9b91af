"""Exact oracles equal the LP optimum (HiGHS); DP shortest path; jit and vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linprog

from tailjax.layers import box_budget, fractional_knapsack, grid_arcs, grid_shortest_path


def _incidence(rows, cols):
    arcs = grid_arcs(rows, cols)
    A = np.zeros((rows * cols, len(arcs)))
    for k, (u, v) in enumerate(arcs):
        A[u, k], A[v, k] = 1.0, -1.0
    b = np.zeros(rows * cols)
    b[0], b[-1] = 1.0, -1.0
    return A, b


def test_pyepo_arc_order():
    arcs = grid_arcs(5, 5)
    assert len(arcs) == 40
    assert arcs[:6] == ((0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (1, 6))
    assert arcs[-4:] == ((20, 21), (21, 22), (22, 23), (23, 24))


@pytest.mark.parametrize("grid", [(5, 5), (3, 4)])
def test_dp_shortest_path_equals_lp_optimum(grid):
    A, b = _incidence(*grid)
    rng = np.random.default_rng(0)
    costs = rng.uniform(0.1, 2.0, (6, A.shape[1])).astype(np.float32)
    paths = jax.jit(jax.vmap(lambda c: grid_shortest_path(c, grid)))(costs)
    for c, w in zip(costs, np.asarray(paths)):
        ref = linprog(c, A_eq=A, b_eq=b, bounds=(0, 1), method="highs")
        np.testing.assert_allclose(c @ w, ref.fun, rtol=1e-5)
        np.testing.assert_allclose(A @ w, b, atol=1e-6)  # a unit flow
        assert set(np.unique(w)) <= {0.0, 1.0}


def test_fractional_knapsack_equals_lp():
    rng = np.random.default_rng(1)
    for _ in range(5):
        v = rng.normal(size=12)
        wt = rng.uniform(1, 3, 12)
        w = jax.jit(fractional_knapsack)(-v, wt, 5.0)
        ref = linprog(-v, A_ub=wt[None], b_ub=[5.0], bounds=(0, 1), method="highs")
        np.testing.assert_allclose(float(-v @ w), ref.fun, rtol=1e-5, atol=1e-6)
        assert float(wt @ w) <= 5.0 + 1e-5


def test_box_budget_equals_lp():
    rng = np.random.default_rng(2)
    c = rng.normal(size=12) * 50
    lo, hi = np.full(12, 0.1), np.full(12, 2.0)
    w = box_budget(c, lo, hi, 7.0)
    ref = linprog(c, A_eq=np.ones((1, 12)), b_eq=[7.0], bounds=list(zip(lo, hi)), method="highs")
    np.testing.assert_allclose(float(c @ w), ref.fun, rtol=1e-5)
    np.testing.assert_allclose(float(jnp.sum(w)), 7.0, rtol=1e-6)


def test_box_budget_with_an_infeasible_total_never_returns_a_point():
    # total 30 > sum(upper) = 24 used to return w = upper, which breaks sum(w) = total
    c, lo, hi = np.arange(12.0), np.full(12, 0.1), np.full(12, 2.0)
    with pytest.raises(ValueError, match="total"):
        box_budget(c, lo, hi, 30.0)
    with pytest.raises(ValueError, match="total"):
        box_budget(c, lo, hi, 1.0)  # below sum(lower) = 1.2
    w = jax.jit(box_budget)(c, lo, hi, jnp.asarray([30.0, 7.0])[0])
    assert np.all(np.isnan(np.asarray(w)))
    w = jax.jit(jax.vmap(box_budget, in_axes=(None, None, None, 0)))(c, lo, hi, jnp.asarray([30.0, 7.0]))
    assert np.all(np.isnan(np.asarray(w[0]))) and float(jnp.sum(w[1])) == pytest.approx(7.0)


def test_bad_input():
    with pytest.raises(ValueError, match="cost"):
        grid_shortest_path(np.ones(39))
    with pytest.raises(ValueError, match="grid"):
        grid_arcs(0, 3)
    with pytest.raises(ValueError, match="weights"):
        fractional_knapsack(np.ones(3), np.ones(4), 1.0)


def test_bad_grid_and_non_scalar_budgets_are_refused():
    with pytest.raises(ValueError, match="grid"):  # (2.5, 3) was truncated to a 2 x 3 grid
        grid_shortest_path(np.ones(7), (2.5, 3))
    with pytest.raises(ValueError, match="grid"):  # was an IndexError
        grid_shortest_path(np.ones(7), (3,))
    assert float(jnp.sum(grid_shortest_path(np.ones(12), (np.int64(3), 3)))) == 4.0
    with pytest.raises(ValueError, match="capacity"):  # was "truth value of an array is ambiguous"
        fractional_knapsack(-np.ones(3), np.ones(3), np.ones(2))
    with pytest.raises(ValueError, match="total"):
        box_budget(np.ones(3), np.zeros(3), np.ones(3), np.ones(2))
    with pytest.raises(ValueError, match="cost"):  # the message named weights
        fractional_knapsack(np.ones((2, 3)), np.ones((2, 3)), 1.0)


def test_box_budget_refuses_infinite_bounds():
    # an infinite upper bound gave [nan, 0, 0]: NaN mixed with numbers
    with pytest.raises(ValueError, match="upper"):
        box_budget(np.ones(3), np.zeros(3), np.array([np.inf, 1.0, 1.0]), 1.0)
    with pytest.raises(ValueError, match="lower"):  # a NaN lower bound was blamed on upper
        box_budget(np.ones(3), np.array([np.nan, 0.0, 0.0]), np.ones(3), 1.0)
    w = jax.jit(lambda u: box_budget(np.ones(3), np.zeros(3), u, 1.0))(jnp.array([jnp.inf, 1.0, 1.0]))
    assert np.all(np.isnan(np.asarray(w)))

"""PyEPO's twin problems without PyEPO: the exact 0-1 knapsack (DP and branch and bound)
against enumeration, and the variance-capped portfolio against scipy's SLSQP and its KKT
conditions; under jit and vmap; bad input. (PyEPO itself: test_pyepo_equivalence.py.)"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize

from tailjax.dfl.problems import (
    binary_knapsack,
    pyepo_knapsack_instance,
    pyepo_portfolio_instance,
    pyepo_risk_level,
    risk_capped_portfolio,
)


def _enumerate(v, w, cap):
    best, best_x = 0.0, np.zeros_like(v)
    for bits in itertools.product([0.0, 1.0], repeat=v.shape[0]):
        x = np.asarray(bits)
        if x @ w <= cap + 1e-9 and x @ v > best:
            best, best_x = x @ v, x
    return best, best_x


def test_binary_knapsack_dp_and_branch_and_bound_are_exact(x64):
    rng = np.random.default_rng(0)
    n, trials = 10, 12
    v = rng.integers(-3, 20, (trials, n)) + rng.normal(0, 0.01, (trials, n))
    w = rng.choice(np.arange(300, 800), (trials, n)) / 100
    caps = 0.3 * w.sum(1)
    bb = jax.jit(jax.vmap(lambda vi, wi, ci: binary_knapsack(vi, wi, ci, return_info=True)))
    x_bb, info = bb(jnp.asarray(v), jnp.asarray(w), jnp.asarray(caps))
    assert bool(jnp.all(info.optimal)) and int(jnp.max(info.nodes)) > 1
    for t in range(trials):
        best, _ = _enumerate(v[t], w[t], caps[t])
        x_dp = np.asarray(binary_knapsack(v[t], w[t], caps[t], weight_unit=0.01))
        for x in (x_dp, np.asarray(x_bb[t])):
            assert set(np.unique(x)) <= {0.0, 1.0}
            assert x @ w[t] <= caps[t] + 1e-9
            np.testing.assert_allclose(x @ v[t], best, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(float(info.value[t]), best, rtol=1e-12)


def test_binary_knapsack_edge_cases_and_bad_input():
    v = jnp.asarray([3.0, 2.0, -1.0], jnp.float32)
    w = np.asarray([2.0, 1.0, 0.5])
    np.testing.assert_array_equal(binary_knapsack(v, w, 3.0), [1.0, 1.0, 0.0])  # integer weights: DP
    np.testing.assert_array_equal(binary_knapsack(v, w, 0.4, weight_unit=0.1), [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(binary_knapsack(v, w, -1.0), [0.0, 0.0, 0.0])
    w_bb, info = jax.jit(lambda a, b: binary_knapsack(a, b, 2.5, return_info=True))(v, jnp.asarray(w, jnp.float32))
    np.testing.assert_array_equal(w_bb, [1.0, 0.0, 0.0])
    assert float(info.value) == 3.0 and bool(info.optimal)
    # a node budget too small to finish says so
    rng = np.random.default_rng(1)
    vv, ww = rng.uniform(1, 2, 24), rng.uniform(1, 2, 24)
    _, short = binary_knapsack(vv, jnp.asarray(ww), 8.0, max_nodes=3, return_info=True)
    assert not bool(short.optimal)
    with pytest.raises(ValueError, match="weights"):
        binary_knapsack(v, w[:2], 1.0)
    with pytest.raises(ValueError, match="weights"):
        binary_knapsack(v, -w, 1.0)
    with pytest.raises(ValueError, match="values"):
        binary_knapsack(jnp.zeros((0,)), np.zeros(0), 1.0)
    with pytest.raises(ValueError, match="weight_unit"):
        binary_knapsack(v, w, 1.0, weight_unit=0.0)
    with pytest.raises(ValueError, match="max_nodes"):
        binary_knapsack(v, w, 1.0, max_nodes=0)


def test_pyepo_knapsack_instance_binary_oracle():
    inst = pyepo_knapsack_instance(num_data=6, num_items=12, deg=2, seed=3, capacity=15.0, binary=True)
    rel = pyepo_knapsack_instance(num_data=6, num_items=12, deg=2, seed=3, capacity=15.0)
    np.testing.assert_array_equal(inst.costs, rel.costs)
    weights = np.asarray(inst.problem.polytope.ineq_matrix[0], np.float64)
    for c in inst.costs[:3]:
        x = np.asarray(inst.oracle(jnp.asarray(c)))
        best, _ = _enumerate(c.astype(np.float64), weights, 15.0)
        np.testing.assert_allclose(x @ c, best, rtol=1e-6)
        assert x @ c <= np.asarray(rel.oracle(jnp.asarray(c))) @ c + 1e-4  # the LP bound


def _slsqp(r, cov, cap):
    d = r.shape[0]
    cons = [{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones(d)},
            {"type": "ineq", "fun": lambda w: (cap - w @ cov @ w) / cap, "jac": lambda w: -2 * cov @ w / cap}]
    res = minimize(lambda w: -r @ w, np.full(d, 1.0 / d), jac=lambda w: -r, bounds=[(0, 1)] * d,
                   constraints=cons, method="SLSQP", options={"ftol": 1e-14, "maxiter": 500})
    assert res.success, res.message
    return res.x


def test_risk_capped_portfolio_against_slsqp_and_kkt(x64):
    inst = pyepo_portfolio_instance(num_data=4, num_features=3, num_assets=8, deg=2, noise_level=1.0, seed=4)
    cov = np.asarray(inst.model.covariance, np.float64)
    cap = float(pyepo_risk_level(jnp.asarray(cov)))
    np.testing.assert_allclose(cap, 2.25 * cov.mean(), rtol=1e-12)
    r = inst.costs.astype(np.float64)
    levels = np.asarray([cap, cap, 0.5 * cap, 1e3 * cap])  # the last: the cap does not bind
    w = np.asarray(jax.jit(jax.vmap(lambda ri, li: risk_capped_portfolio(ri, jnp.asarray(cov), li)))(
        jnp.asarray(r), jnp.asarray(levels)))
    for i in range(4):
        ref = _slsqp(r[i], cov, levels[i])
        assert r[i] @ w[i] >= r[i] @ ref - 1e-9 * abs(r[i] @ ref)
        assert w[i] @ cov @ w[i] <= levels[i] * (1 + 1e-9) and abs(w[i].sum() - 1) < 1e-9
    np.testing.assert_array_equal(w[3], np.eye(8)[np.argmax(r[3])])
    # KKT of the capped problem at a binding cap: r - 2 lam Sigma w = nu on the support, <= nu off it
    g = cov @ w[0]
    support = w[0] > 1e-6
    assert support.sum() >= 2 and abs(w[0] @ g - cap) < 1e-9 * cap
    lam_nu = np.linalg.lstsq(np.stack([2 * g[support], np.ones(support.sum())], 1), r[0][support], rcond=None)[0]
    resid = r[0] - 2 * lam_nu[0] * g - lam_nu[1]
    assert lam_nu[0] > 0 and np.max(np.abs(resid[support])) < 1e-6 and np.max(resid[~support]) < 1e-6
    # the instance's oracle is this solver at PyEPO's cap
    np.testing.assert_allclose(jax.jit(inst.oracle)(jnp.asarray(r[1])), w[1], atol=1e-6)


def test_risk_capped_portfolio_bad_input():
    cov = jnp.eye(3)
    with pytest.raises(ValueError, match="returns"):
        risk_capped_portfolio(jnp.zeros((0,)), cov, 1.0)
    with pytest.raises(ValueError, match="covariance"):
        risk_capped_portfolio(jnp.zeros(3), jnp.eye(2), 1.0)
    with pytest.raises(ValueError, match="bisections"):
        risk_capped_portfolio(jnp.zeros(3), cov, 1.0, bisections=0)
    with pytest.raises(ValueError, match="gamma"):
        pyepo_risk_level(cov, -1.0)

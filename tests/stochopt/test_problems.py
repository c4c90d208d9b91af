"""Problems: portfolio closed forms and optimum; the farmer's JAX recourse LP and its
risk-averse SAA against the extensive form solved by HiGHS."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.optimize import linprog, minimize

from tailjax.stochopt import solve_saa
from tailjax.stochopt.problems import (
    farmer_problem,
    portfolio_optimum,
    portfolio_problem,
    portfolio_var_cvar,
    recourse_closed_form,
    recourse_cost,
    recourse_matrices,
    standard_tail,
)

from ._highs import farmer_extensive_form


@pytest.mark.parametrize("nu", [None, 3.0, 5.0])
@pytest.mark.parametrize("beta", [1e-2, 1e-4])
def test_standard_tail_closed_forms(nu, beta, x64):
    q, c = standard_tail(beta, nu, jnp.float64)
    law = stats.norm() if nu is None else stats.t(nu)
    rq = law.isf(beta)
    rc = law.expect(lambda x: x, lb=rq) / beta
    assert float(q) == pytest.approx(rq, rel=1e-9)
    assert float(c) == pytest.approx(rc, rel=1e-7)


@pytest.mark.parametrize("returns", [pytest.param("gaussian", marks=pytest.mark.slow), "t"])
def test_portfolio_cvar_matches_monte_carlo(returns, x64):
    p = portfolio_problem(6, returns, dtype=jnp.float64)
    theta = p.theta_set.feasible_point(jnp.float64)
    x = p.dist.sample(jax.random.PRNGKey(0), 200_000)
    losses = jax.vmap(p.loss, in_axes=(0, None))(x, theta)
    var, cv = portfolio_var_cvar(p, theta, 0.05)
    from tailjax.risk import var_cvar

    mv, mc = var_cvar(losses, 0.05)
    assert float(mv) == pytest.approx(float(var), rel=0.015)
    assert float(mc) == pytest.approx(float(cv), rel=0.02)


def test_portfolio_optimum_matches_scipy(x64):
    p = portfolio_problem(3, "t", dtype=jnp.float64)
    theta, value, var = jax.jit(lambda: portfolio_optimum(p, 1e-3, risk_weight=0.2))()
    value_and_grad = jax.jit(jax.value_and_grad(lambda t: portfolio_var_cvar(p, t, 1e-3, 0.2)[1]))

    def fun(t):
        v, g = value_and_grad(jnp.asarray(t))
        return float(v), np.asarray(g)

    mu, target = np.asarray(p.mean), float(p.theta_set.target)
    ref = minimize(
        fun, np.full(3, 1 / 3), jac=True, method="SLSQP", bounds=[(0, 1)] * 3,
        constraints=[{"type": "eq", "fun": lambda t: t.sum() - 1}, {"type": "ineq", "fun": lambda t: mu @ t - target}],
        options={"ftol": 1e-12, "maxiter": 500},
    )
    assert float(value) <= ref.fun + 1e-7 * abs(ref.fun)
    assert float(value) == pytest.approx(ref.fun, rel=1e-6)
    assert float(mu @ np.asarray(theta)) >= target - 1e-9


def test_portfolio_bad_input():
    with pytest.raises(ValueError, match="dim"):
        portfolio_problem(1)
    with pytest.raises(ValueError, match="returns"):
        portfolio_problem(5, "cauchy")
    with pytest.raises(ValueError, match="nu"):
        portfolio_problem(5, "t", nu=1.0)
    with pytest.raises(ValueError, match="correlation"):
        portfolio_problem(5, correlation=1.0)


@pytest.mark.slow  # the fast suite checks the farmer through the extensive form below
def test_farmer_recourse_lp_in_jax(x64):
    fm = farmer_problem()
    theta = jnp.array([170.0, 80.0, 250.0])
    x = fm.dist.sample(jax.random.PRNGKey(3), 256)
    t = jax.vmap(fm.yields)(x)
    value_and_grad = jax.jit(jax.vmap(jax.value_and_grad(recourse_cost), in_axes=(None, 0)))
    lp, g_lp = value_and_grad(theta, t)
    closed = jax.vmap(lambda tt: recourse_closed_form(theta, tt))(t)
    np.testing.assert_allclose(lp, closed, rtol=1e-8)
    # one scenario against HiGHS on the same LP
    q, W, h0, T = recourse_matrices()
    t0 = np.asarray(t[0])
    ref = linprog(q, A_ub=W, b_ub=h0 - T(t0) @ np.asarray(theta), bounds=[(0, None)] * 6, method="highs")
    assert float(lp[0]) == pytest.approx(ref.fun, rel=1e-8)
    # gradients in theta from the LP duals equal the closed form's
    g_cf = jax.vmap(jax.grad(recourse_closed_form), in_axes=(None, 0))(theta, t)
    np.testing.assert_allclose(g_lp, g_cf, rtol=1e-6, atol=1e-6)


def test_farmer_with_random_demand_grows_linearly_and_its_lp_matches_the_closed_form(x64):
    fm = farmer_problem(demand_sd=0.2, shocks="t")
    assert fm.dist.dim == 5
    theta = jnp.array([170.0, 80.0, 250.0])
    x = fm.dist.sample(jax.random.PRNGKey(5), 32)
    lp = jax.jit(jax.vmap(fm.loss, in_axes=(0, None)))(x, theta)
    closed = jax.vmap(fm.loss_closed_form, in_axes=(0, None))(x, theta)
    np.testing.assert_allclose(lp, closed, rtol=1e-8)
    # assumption 2 with rho = 1: along a demand shock the cost grows like 238 * 200 * 0.2 * t
    e4 = jnp.zeros(5).at[3].set(1.0)
    slope = (fm.loss_closed_form(2e4 * e4, theta) - fm.loss_closed_form(1e4 * e4, theta)) / 1e4
    assert float(slope) == pytest.approx(238.0 * 200.0 * 0.2)
    # Example 2 is bounded above: no harvest costs at most the feed and the planting
    ex2 = farmer_problem()
    worst = float(jnp.dot(ex2.planting_cost, theta)) + 238.0 * 200 + 210.0 * 240
    assert float(ex2.loss_closed_form(-1e4 * jnp.ones(3), theta)) == pytest.approx(worst)
    with pytest.raises(ValueError, match="shocks"):
        farmer_problem(shocks="cauchy")


def test_farmer_risk_averse_saa_matches_extensive_form(x64):
    fm = farmer_problem()
    n, beta = 120, 0.1
    x = fm.dist.sample(jax.random.PRNGKey(4), n)
    solve = jax.jit(lambda s, lam: solve_saa(fm.loss, s, fm.theta_set, beta, risk_weight=lam, tol=1e-7))
    for risk_weight in (0.0, 0.5):  # CVaR and mean-CVaR, one compiled program
        res = solve(x, risk_weight)
        ref, _ = farmer_extensive_form(np.asarray(jax.vmap(fm.yields)(x)), beta, risk_weight)
        assert bool(res.converged)
        assert abs(float(res.value) - ref) <= 1e-4 * abs(ref)
        assert float(res.lower) <= ref + 1e-9 * abs(ref)
        assert float(jnp.sum(res.theta)) <= 500.0 + 1e-6

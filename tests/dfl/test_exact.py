"""Exact Gaussian evaluation: closed-form CVaR against Monte Carlo with 1e6 samples, the SOCP
decision against scipy, exact eq. (9) against Monte Carlo, fresh-sample references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tailjax.dfl import (
    GaussianReference,
    cvar_multiplier,
    cvar_regret,
    gaussian_cvar,
    gaussian_cvar_decision,
    gaussian_regret_reference,
    regret_reference,
    residual_covariance,
    worst_case_cvar_multiplier,
)
from tailjax.dfl.exact import _socp_qp_and_gap, _socp_root, _socp_root_search
from tailjax.dfl.problems import make_instance, pyepo_knapsack_instance
from tailjax.risk import cvar
from tests.dfl import gaussian_cases as cases


def test_cvar_multiplier_is_the_standard_normal_cvar():
    z = np.random.default_rng(0).standard_normal(1_000_000)
    for a in (0.05, 0.1, 0.5):
        np.testing.assert_allclose(cvar_multiplier(a), float(cvar(jnp.asarray(z), a)), rtol=5e-3)
    assert cvar_multiplier(1.0) == 0.0
    with pytest.raises(ValueError, match="tail_prob"):
        cvar_multiplier(0.0)


def test_closed_form_cvar_matches_monte_carlo_1e6(x64):
    d = 5
    mean, cov = cases.gaussian(d)
    problem = cases.problem(d, "equality", quadratic=jnp.asarray(cov))
    w = jnp.asarray(np.random.default_rng(1).dirichlet(np.ones(d)))
    c = np.random.default_rng(2).multivariate_normal(mean, cov, 1_000_000)
    f = -c @ np.asarray(w) + float(w @ (jnp.asarray(cov) @ w))
    for a in (0.05, 0.1, 1.0):
        exact = jax.jit(gaussian_cvar, static_argnums=4)(problem, jnp.asarray(mean), jnp.asarray(cov), w, a)
        mc = float(cvar(jnp.asarray(f), a))
        # about four standard errors of the tail average of n * a draws
        assert abs(float(exact) - mc) < 4 * np.std(f) / np.sqrt(len(f) * a), (a, float(exact), mc)


@pytest.mark.parametrize("budget", ["equality", pytest.param("inequality", marks=pytest.mark.slow)])
def test_socp_decision_matches_scipy(x64, budget):
    d = 6
    mean, cov = cases.gaussian(d, seed=3)
    quadratic = cov if budget == "equality" else None
    problem = cases.problem(d, budget, quadratic=None if quadratic is None else jnp.asarray(quadratic))
    k = cvar_multiplier(0.1)
    solve = jax.jit(jax.vmap(lambda m: gaussian_cvar_decision(problem, m, jnp.asarray(cov), 0.1)))
    means = np.stack([mean, mean[::-1], 0.5 * mean])
    ws = np.asarray(solve(jnp.asarray(means)))
    for m, w in zip(means, ws):
        obj, ref = cases.slsqp_reference(m, cov, k, budget, quadratic=quadratic)
        assert ref.success
        # the CVaR to 1e-6 (the third mean makes w* = 0, where sqrt(w' S w) has a kink and the
        # interior point stops ~1e-5 inside the box); elsewhere to about 1e-15
        assert abs(obj(w) - ref.fun) <= 1e-6
        np.testing.assert_allclose(w, ref.x, atol=1e-4)


@pytest.mark.parametrize("budget", ["equality", pytest.param("inequality", marks=pytest.mark.slow)])
def test_socp_root_search_converges_in_sixteen_steps(x64, budget):
    # bisection would leave a bracket of 92 / 2**16 ~ 1e-3 in log t after 16 steps
    d = 8
    mean, cov = cases.gaussian(d, seed=1)
    problem = cases.problem(d, budget)
    means = jnp.asarray(mean + 0.05 * np.random.default_rng(0).standard_normal((16, d)))
    root = lambda steps: jax.jit(jax.vmap(  # noqa: E731
        lambda m: _socp_root(2.0, steps, 1e-14, 60, problem, m, jnp.asarray(cov))))(means)
    np.testing.assert_allclose(root(16), root(200), rtol=0, atol=1e-9)


def _knapsack_socp(n_means):
    """Diff-DRO's cone on PyEPO's knapsack (50 items, float32): the case the bound was made for."""
    inst = pyepo_knapsack_instance(num_data=200 + n_means, num_items=50, deg=2, seed=0, reg=0.1)
    x, c = np.asarray(inst.features, np.float32), np.asarray(inst.costs, np.float32)
    cov = jnp.asarray(residual_covariance(x[:200], c[:200]), jnp.float32)
    return inst.problem, jnp.asarray(c[200:]), cov, worst_case_cvar_multiplier(0.05)


def test_socp_bracket_bound_holds_log_sd_is_nondecreasing_in_log_t():
    # the bracket update rests on phi(u) = log sd(w_u) never falling as u = log t grows
    problem, means, cov, kappa = _knapsack_socp(4)
    us = jnp.linspace(-6.0, 6.0, 61)
    phi = jax.jit(jax.vmap(jax.vmap(lambda m, u: u - _socp_qp_and_gap(kappa, 40, problem, m, cov, u)[1],
                                    in_axes=(None, 0)), in_axes=(0, None)))(means, us)
    assert float(jnp.min(phi[:, -1] - phi[:, 0])) > 4.0  # phi moves over the grid
    assert float(jnp.min(jnp.diff(phi, axis=1))) > -5e-6  # float32 solves: about 5e-7 of noise


def test_float64_cone_qps_converge_where_the_barrier_once_went_to_zero(x64):
    # the float64 QP at u = 3.6 on the third mean kept shrinking its barrier after the gap test
    # held, until the dual residual stalled 60x above its test and the solve returned NaN
    problem, means, cov, kappa = _knapsack_socp(4)
    to64 = lambda a: jnp.asarray(a, jnp.float64)  # noqa: E731
    problem, means, cov = jax.tree_util.tree_map(to64, problem), to64(means), to64(cov)
    us = jnp.linspace(-6.0, 6.0, 61, dtype=jnp.float64)
    phi = jax.jit(jax.vmap(jax.vmap(lambda m, u: u - _socp_qp_and_gap(kappa, 60, problem, m, cov, u)[1],
                                    in_axes=(None, 0)), in_axes=(0, None)))(means, us)
    assert bool(jnp.all(jnp.isfinite(phi))), np.argwhere(~np.isfinite(np.asarray(phi)))
    assert float(jnp.min(jnp.diff(phi, axis=1))) > -1e-7  # float64 solves: about 1e-8 of noise


def test_socp_root_search_on_a_knapsack_cone_takes_at_most_twelve_qps():
    # regula falsi with the bracket moved only to u took up to 15 QPs here; this search 10
    problem, means, cov, kappa = _knapsack_socp(16)
    search = lambda steps: jax.jit(jax.vmap(  # noqa: E731
        lambda m: _socp_root_search(kappa, steps, 1e-10, 40, problem, m, cov)))(means)
    log_t, steps = search(60)
    assert int(jnp.max(steps)) <= 12, np.asarray(steps)
    np.testing.assert_allclose(search(200)[0], log_t, rtol=0, atol=0)


def test_exact_regret_matches_monte_carlo_1e6():
    inst = make_instance("portfolio", num_data=4, num_assets=5, deg=2, noise=20.0, seed=0)
    x = inst.features[:2]
    ref = gaussian_regret_reference(inst.problem, inst.model, x, 0.1)
    assert isinstance(ref, GaussianReference) and ref.decisions.shape == (2, 5)
    w = jnp.full((2, 5), 0.2)
    rng = np.random.default_rng(0)
    P = np.asarray(inst.problem.quadratic, np.float64)
    mc = {"cvar_of_difference": [], "difference_of_cvars": []}
    for i in range(2):
        c = rng.multivariate_normal(ref.means[i], ref.covariance, 1_000_000)
        ws, wh = ref.decisions[i], np.asarray(w[i], np.float64)
        f_hat, f_star = -c @ wh + wh @ P @ wh, -c @ ws + ws @ P @ ws
        denom = abs(-ref.means[i] @ ws + ws @ P @ ws)
        mc["cvar_of_difference"].append(100 * float(cvar(jnp.asarray(f_hat - f_star, jnp.float32), 0.1)) / denom)
        mc["difference_of_cvars"].append(
            100 * (float(cvar(jnp.asarray(f_hat), 0.1)) - float(cvar(jnp.asarray(f_star), 0.1))) / denom)
    for form, values in mc.items():
        exact = float(cvar_regret(w, ref, inst.problem, form=form))
        np.testing.assert_allclose(exact, np.mean(values), rtol=2e-2, err_msg=form)
    assert float(cvar_regret(ref.decisions, ref, inst.problem)) == pytest.approx(0.0, abs=1e-9)
    gap = cvar_regret(w, ref, inst.problem, form="abs_difference_of_cvars", per_instance=True)
    assert gap.shape == (2,) and bool(jnp.all(gap >= 0))


def test_fresh_sample_reference_is_independent_of_the_solve():
    inst = make_instance("shortest_path", num_data=4, deg=2, seed=0)
    x = jnp.asarray(inst.features[:2], jnp.float32)
    same = regret_reference(jax.random.key(0), inst.problem, inst.model, x, 0.2, num_samples=40)
    fresh = regret_reference(jax.random.key(0), inst.problem, inst.model, x, 0.2, num_samples=40,
                             eval_samples=300)
    assert fresh.samples.shape == (2, 300, 40) and fresh.optimal_costs.shape == (2, 300)
    np.testing.assert_array_equal(same.decisions, fresh.decisions)  # the same w*
    # w* is optimal in-sample (0 regret); on fresh draws its regret is not forced to 0
    assert abs(float(cvar_regret(same.decisions, same, inst.problem))) < 1e-4
    assert float(jnp.max(jnp.abs(fresh.samples[:, :40] - same.samples))) > 0
    with pytest.raises(ValueError, match="eval_samples"):
        regret_reference(jax.random.key(0), inst.problem, inst.model, x, 0.2, eval_samples=0)


def test_bad_input():
    inst = make_instance("portfolio", num_data=4, num_assets=5, deg=2, seed=0)
    x = inst.features[:2]
    with pytest.raises(ValueError, match="tail_prob"):
        gaussian_regret_reference(inst.problem, inst.model, x, 1.5)
    with pytest.raises(ValueError, match="features"):
        gaussian_regret_reference(inst.problem, inst.model, x[0], 0.1)
    sp = make_instance("shortest_path", num_data=4, deg=2, seed=0)
    with pytest.raises(ValueError, match="Gaussian"):
        gaussian_regret_reference(sp.problem, sp.model, sp.features[:2], 0.1)
    cov = inst.model.covariance
    with pytest.raises(ValueError, match="mean"):
        gaussian_cvar(inst.problem, jnp.zeros(4), cov, jnp.zeros(5), 0.1)
    with pytest.raises(ValueError, match="w must have shape"):
        gaussian_cvar(inst.problem, jnp.zeros(5), cov, jnp.zeros(4), 0.1)
    with pytest.raises(ValueError, match="cov"):
        gaussian_cvar_decision(inst.problem, jnp.zeros(5), cov[:4, :4], 0.1)
    ref = gaussian_regret_reference(inst.problem, inst.model, x, 0.1)
    with pytest.raises(ValueError, match="decisions"):
        cvar_regret(jnp.zeros((3, 5)), ref, inst.problem)
    with pytest.raises(ValueError, match="form"):
        cvar_regret(jnp.zeros((2, 5)), ref, inst.problem, form="ratio")

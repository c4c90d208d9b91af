"""Diff-DRO: the worst-case CVaR multiplier against its extremal two-point law, the robust
decision against scipy, its implicit gradient against finite differences, the residual
covariance against the truth, and the validation hook of fit_baseline."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tailjax.dfl import (
    DFLBatch,
    diff_dro_loss,
    fit_baseline,
    kappa_decision,
    moment_dro_decision,
    objective,
    residual_covariance,
    worst_case_cvar_multiplier,
)
from tailjax.dfl.problems import portfolio_instance
from tailjax.nn import LinearPredictor
from tailjax.risk import cvar
from tests.dfl import gaussian_cases as cases


@pytest.mark.parametrize("a", [0.05, 0.2, 0.5])
def test_multiplier_is_attained_by_the_two_point_law_and_bounds_others(a):
    # mass a at sqrt((1-a)/a), 1 - a at -sqrt(a/(1-a)): mean 0, variance 1, CVaR_a = the multiplier
    n = 100_000
    k = int(round(a * n))
    two_point = np.concatenate([np.full(k, np.sqrt((1 - a) / a)), np.full(n - k, -np.sqrt(a / (1 - a)))])
    assert abs(two_point.mean()) < 1e-9 and abs(two_point.var() - 1.0) < 1e-9
    bound = worst_case_cvar_multiplier(a)
    assert float(cvar(jnp.asarray(two_point, jnp.float32), a)) == pytest.approx(bound, rel=1e-5)
    rng = np.random.default_rng(0)
    for law in (rng.standard_normal(n), rng.uniform(-np.sqrt(3), np.sqrt(3), n), rng.standard_t(5, n) / np.sqrt(5 / 3)):
        assert float(cvar(jnp.asarray(law, jnp.float32), a)) < bound
    assert worst_case_cvar_multiplier(a, radius=0.3) == pytest.approx(bound + 0.3)


# at a = 0.1 with a budget inequality the robust decision is w = 0 (a kink the interior point
# approaches only to ~1e-5); a = 0.5 keeps it inside
@pytest.mark.parametrize("budget,a,radius", [("equality", 0.1, 0.5), ("inequality", 0.5, 0.1)])
def test_robust_decision_matches_scipy(x64, budget, a, radius):
    d = 6
    mean, cov = cases.gaussian(d, seed=3)
    problem = cases.problem(d, budget)
    k = np.sqrt((1 - a) / a) + radius
    w = np.asarray(moment_dro_decision(problem, jnp.asarray(mean), jnp.asarray(cov), a, radius=radius))
    obj, ref = cases.slsqp_reference(mean, cov, k, budget)
    assert ref.success and np.sum(ref.x) > 0.1
    assert abs(obj(w) - ref.fun) <= 1e-7
    np.testing.assert_allclose(w, ref.x, atol=1e-4)


@pytest.mark.parametrize("budget", ["equality", pytest.param("inequality", marks=pytest.mark.slow)])
def test_kappa_decision_gradient_matches_finite_differences(x64, budget):
    d = 6
    mean, cov = cases.gaussian(d, seed=3)
    problem = cases.problem(d, budget)
    v = jnp.asarray(np.random.default_rng(0).standard_normal(d))
    f = jax.jit(lambda m, s: kappa_decision(problem, m, s, 1.7) @ v)
    m0, s0 = jnp.asarray(mean), jnp.asarray(cov)
    g_mean, g_cov = jax.jit(jax.grad(f, argnums=(0, 1)))(m0, s0)
    eps = 1e-6
    fd_mean = np.array([(f(m0 + eps * e, s0) - f(m0 - eps * e, s0)) / (2 * eps) for e in np.eye(d)])
    scale = np.max(np.abs(fd_mean))
    assert scale > 1.0  # the decision moves with the mean
    np.testing.assert_allclose(np.asarray(g_mean), fd_mean, atol=1e-4 * scale)
    # one symmetric direction of cov
    direction = jnp.asarray(np.outer(np.arange(d), np.arange(d)) * 1e-3)
    fd_cov = (f(m0, s0 + eps * direction) - f(m0, s0 - eps * direction)) / (2 * eps)
    assert float(jnp.sum(g_cov * direction)) == pytest.approx(float(fd_cov), rel=1e-3, abs=1e-6)


@pytest.mark.slow  # fast-suite time; diff_dro_loss also runs fast in test_fit_baseline_validates_with_the_given_decision
def test_diff_dro_loss_is_the_regret_of_the_robust_decision(x64):
    d = 5
    mean, cov = cases.gaussian(d)
    problem = cases.problem(d, "equality")
    x = jnp.asarray(np.random.default_rng(1).standard_normal((4, 2)))
    c = jnp.asarray(np.random.default_rng(2).standard_normal((4, d)) * 0.1 + mean)
    w_star = jnp.full((4, d), 1.0 / d)
    theta = jnp.asarray(np.random.default_rng(3).standard_normal((2, d)) * 0.05)
    apply_fn = lambda p, xs: xs @ p + jnp.asarray(mean)  # noqa: E731
    value, _ = diff_dro_loss(theta, DFLBatch(x, c, w_star), jax.random.key(0), apply_fn=apply_fn, problem=problem,
                             cov=jnp.asarray(cov), tail_prob=0.2, radius=0.1)
    ws = jax.vmap(lambda ch: moment_dro_decision(problem, ch, jnp.asarray(cov), 0.2, radius=0.1))(apply_fn(theta, x))
    regret = jax.vmap(lambda ci, wi, si: objective(problem, ci, wi) - objective(problem, ci, si))(c, ws, w_star)
    assert float(value) == pytest.approx(float(jnp.mean(regret)), rel=1e-5)
    g = jax.grad(lambda t: diff_dro_loss(t, DFLBatch(x, c, w_star), jax.random.key(0), apply_fn=apply_fn,
                                         problem=problem, cov=jnp.asarray(cov), tail_prob=0.2, radius=0.1)[0])(theta)
    assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.max(jnp.abs(g))) > 0


def test_residual_covariance_recovers_the_noise_covariance():
    rng = np.random.default_rng(0)
    n, p, d = 20_000, 3, 4
    x = rng.standard_normal((n, p))
    L = rng.uniform(-1, 1, (d, d))
    truth = L @ L.T + 0.1 * np.eye(d)
    c = 2.0 + x @ rng.standard_normal((p, d)) + rng.multivariate_normal(np.zeros(d), truth, n)
    est = residual_covariance(x, c, shrinkage=0.0)
    np.testing.assert_allclose(est, truth, atol=0.05 * np.max(np.diag(truth)))
    shrunk = residual_covariance(x, c, shrinkage=1.0)
    np.testing.assert_allclose(shrunk, np.diag(np.diag(est)))
    with pytest.raises(ValueError, match="more rows"):
        residual_covariance(x[:4], c[:4])


@pytest.mark.slow
def test_fit_baseline_validates_with_the_given_decision():
    inst = portfolio_instance(num_data=24, num_features=2, num_assets=3)
    x, c = jnp.asarray(inst.features, jnp.float32), jnp.asarray(inst.costs, jnp.float32)
    fixed = jnp.asarray([1.0, 0.0, 0.0], jnp.float32)  # a decision that ignores the prediction
    res = fit_baseline(jax.random.key(0), LinearPredictor(3), inst, x[:16], c[:16], loss=diff_dro_loss,
                       num_steps=2, batch_size=8, validation=(x[16:], c[16:]), eval_every=1,
                       decide=lambda ch: fixed, cov=jnp.eye(3) * 0.01, tail_prob=0.2)
    value = jax.vmap(lambda ci, w: objective(inst.problem, ci, w))
    f_opt = value(c[16:], jax.vmap(inst.oracle)(c[16:]))
    expected = float(jnp.sum(value(c[16:], jnp.broadcast_to(fixed, (8, 3))) - f_opt) / jnp.sum(jnp.abs(f_opt)))
    assert [v for _, v in res.evaluations] == pytest.approx([expected] * len(res.evaluations), rel=1e-5)

"""SAA (CVaR and mean-CVaR), plain and importance-sampled, against HiGHS; the level method's
certificate."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tailjax.importance import self_structuring_sample
from tailjax.stochopt import Box, level_method, saa_value, solve_saa
from tailjax.stochopt.problems import portfolio_problem

from ._highs import cvar_lp

BETA = 0.02
N = 600


def _affine(problem, z):
    """Loss -theta^T (mu + L z_i) as slopes / offsets for the HiGHS reference."""
    slopes = -(np.asarray(problem.mean) + np.asarray(z) @ np.asarray(problem.chol).T)
    return slopes, np.zeros(slopes.shape[0])


@pytest.fixture(scope="module")
def setup():
    with jax.enable_x64(True):
        p = portfolio_problem(5, "t", dtype=jnp.float64)
        z = p.dist.sample(jax.random.PRNGKey(0), N)
        zi, log_lr = self_structuring_sample(jax.random.PRNGKey(1), p.dist, N, 2.0, BETA)

        def solve(samples, log_lr, risk_weight):
            return solve_saa(p.loss, samples, p.theta_set, BETA, log_lr=log_lr, risk_weight=risk_weight, tol=1e-6)

        solver = jax.jit(solve)  # risk_weight traced: one program for every test below
    return p, z, zi, log_lr, solver


@pytest.mark.parametrize("risk_weight", [0.0, 0.3])
@pytest.mark.parametrize("weighted", [False, True])
def test_solve_saa_matches_highs(setup, risk_weight, weighted, x64):
    p, z, zi, log_lr, solver = setup
    samples, lr = (zi, log_lr) if weighted else (z, jnp.zeros(N))
    res = solver(samples, lr, risk_weight)
    slopes, offsets = _affine(p, samples)
    ref, theta_ref = cvar_lp(slopes, offsets, p.theta_set, BETA, weights=np.exp(np.asarray(lr)), risk_weight=risk_weight)
    assert bool(res.converged)
    assert abs(float(res.value) - ref) <= 1e-4 * abs(ref)
    assert float(res.lower) <= ref + 1e-9 * abs(ref)  # the certificate is a valid lower bound
    # the returned (u, theta) evaluates to the returned value
    value, u = saa_value(res.theta, p.loss, samples, BETA, log_lr=lr, risk_weight=risk_weight)
    np.testing.assert_allclose(value, res.value, rtol=1e-12)
    np.testing.assert_allclose(u, res.u, rtol=1e-12)


@pytest.mark.slow
def test_solve_saa_vmaps_over_replications(setup, x64):
    p, z, zi, log_lr, solver = setup
    batch = jnp.stack([z, zi])
    lrs = jnp.stack([jnp.zeros(N), log_lr])
    res = jax.vmap(lambda s, l: solver(s, l, 0.0))(batch, lrs)
    for i in range(2):
        single = solver(batch[i], lrs[i], 0.0)
        assert float(res.value[i]) == pytest.approx(float(single.value), rel=2e-6)


@pytest.mark.slow
def test_box_set_against_highs(x64):
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_t(4, size=(400, 3)))
    box = Box(jnp.array([-1.0, 0.0, 0.2]), jnp.array([1.0, 2.0, 1.0]))
    loss = lambda xi, th: jnp.dot(th, xi) + 0.1 * jnp.sum(th)  # noqa: E731
    res = jax.jit(lambda s: solve_saa(loss, s, box, 0.1, tol=1e-7))(x)
    ref, _ = cvar_lp(np.asarray(x) + 0.1, np.zeros(400), box, 0.1)
    assert abs(float(res.value) - ref) <= 1e-4 * max(abs(ref), 1.0)


def test_level_method_certificate_on_smooth_problem_vmapped(x64):
    # min ||theta - y||^2 over the simplex (the projection), for a batch of y under vmap
    from tailjax.stochopt import Simplex

    s = Simplex(4)
    ys = jnp.array([[0.9, 0.4, -0.2, 0.1], [0.0, 0.0, 1.0, 2.0], [0.3, 0.3, 0.3, 0.3]])

    def solve(y):
        return level_method(lambda t: (jnp.sum((t - y) ** 2), jnp.zeros(())), s, s.feasible_point(jnp.float64), tol=1e-8)

    res = jax.jit(jax.vmap(solve))(ys)
    for i, y in enumerate(ys):
        best = float(jnp.sum((s.project(y) - y) ** 2))
        assert float(res.lower[i]) <= best + 1e-12 <= float(res.value[i]) + 1e-12
        assert float(res.value[i]) - best <= 1e-7


def test_bad_input(setup):
    p, z, *_ = setup
    with pytest.raises(ValueError, match="risk_weight"):
        saa_value(p.theta_set.feasible_point(), p.loss, z, BETA, risk_weight=1.5)
    with pytest.raises(ValueError, match="tail_prob"):
        saa_value(p.theta_set.feasible_point(), p.loss, z, 0.0)
    with pytest.raises(ValueError, match="level"):
        level_method(lambda t: (jnp.sum(t), 0.0), p.theta_set, p.theta_set.feasible_point(), level=1.0)
    with pytest.raises(ValueError, match="theta0"):
        level_method(lambda t: (jnp.sum(t), 0.0), p.theta_set, jnp.full(p.theta_set.dim + 2, 0.1))


@pytest.mark.slow
@pytest.mark.parametrize("dim", [20, 100])
def test_solve_saa_large_dimension_matches_highs(dim, x64):
    p = portfolio_problem(dim, "gaussian", dtype=jnp.float64)
    z = p.dist.sample(jax.random.PRNGKey(dim), 2000)
    res = jax.jit(lambda s: solve_saa(p.loss, s, p.theta_set, 0.05, tol=1e-6, max_iter=400))(z)
    slopes, offsets = _affine(p, z)
    ref, _ = cvar_lp(slopes, offsets, p.theta_set, 0.05)
    assert bool(res.converged)
    assert abs(float(res.value) - ref) <= 1e-4 * abs(ref)

"""ODE (Euler, Heun) and memoryless-SDE samplers with the exact Gaussian velocity."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tailjax.flows.gaussian import gaussian_velocity
from tailjax.flows.ode import ode_log_prob, ode_sample, ode_sample_and_log_prob, ode_solve, uniform_time_grid
from tailjax.flows.sde import memoryless_coefficients, memoryless_sample, memoryless_solve

MEAN = np.array([0.5, -1.0])
COV = np.array([[1.44, 0.6], [0.6, 0.61]])


def field(params, x, t):
    return gaussian_velocity(x, t, params["mean"], params["cov"])


PARAMS = {"mean": MEAN, "cov": COV}


def _gauss_logpdf(x):
    d = x - MEAN
    return -0.5 * (d @ np.linalg.solve(COV, d) + np.log(np.linalg.det(2 * np.pi * COV)))


@pytest.mark.parametrize("method,steps,tol", [("euler", 100, 0.03), ("heun", 20, 0.01)])
def test_ode_moments(method, steps, tol, x64):
    x = jax.jit(lambda k: ode_sample(k, field, PARAMS, 4000, 2, num_steps=steps, method=method))(jax.random.key(0))
    # Deterministic map of N(0, I): compare the moments of the pushed-forward samples.
    np.testing.assert_allclose(x.mean(0), MEAN, atol=0.06)
    np.testing.assert_allclose(np.cov(np.asarray(x).T), COV, atol=tol + 0.06)


def test_ode_exact_logdet_matches_jacobian_of_the_whole_map(x64):
    x0 = jax.random.normal(jax.random.key(1), (4, 2))
    for method in ("euler", "heun"):
        x1, logp = jax.jit(lambda z: ode_sample_and_log_prob(field, PARAMS, z, num_steps=8, method=method))(x0)
        full = lambda z: ode_solve(field, PARAMS, z[None], num_steps=8, method=method)[0]
        jac = jax.jit(jax.vmap(jax.jacobian(full)))(x0)
        logdet = jnp.linalg.slogdet(jac)[1]
        log_p0 = -0.5 * jnp.sum(x0**2, -1) - jnp.log(2 * jnp.pi)
        np.testing.assert_allclose(logp, log_p0 - logdet, rtol=1e-10)
        np.testing.assert_allclose(x1, jax.jit(jax.vmap(full))(x0), rtol=1e-12)


def test_ode_log_prob_converges_to_the_true_density(x64):
    x0 = jax.random.normal(jax.random.key(2), (6, 2))
    fn = jax.jit(functools.partial(ode_sample_and_log_prob, field, PARAMS, num_steps=100, method="heun"),
                 static_argnames="logdet")
    x1, lp_exact = fn(x0, logdet="exact")
    _, lp_trace = fn(x0, logdet="trace")
    truth = np.array([_gauss_logpdf(np.asarray(x)) for x in x1])
    np.testing.assert_allclose(lp_exact, truth, atol=2e-3)
    np.testing.assert_allclose(lp_trace, truth, atol=2e-3)
    # Backwards from data to noise: the density of arbitrary points.
    pts = jnp.asarray(MEAN) + jax.random.normal(jax.random.key(7), (6, 2))
    lp_back = jax.jit(lambda x: ode_log_prob(field, PARAMS, x, num_steps=100))(pts)
    np.testing.assert_allclose(lp_back, [_gauss_logpdf(np.asarray(x)) for x in pts], atol=2e-3)


def test_ode_trajectory_and_bad_input():
    x0 = jnp.zeros((3, 2))
    x1, traj = jax.jit(lambda z: ode_solve(field, PARAMS, z, num_steps=5, method="euler", return_trajectory=True))(x0)
    assert traj.shape == (3, 6, 2)
    np.testing.assert_allclose(traj[:, -1], x1)
    with pytest.raises(ValueError, match="method"):
        ode_solve(field, PARAMS, x0, method="rk4")
    with pytest.raises(ValueError, match="x0"):
        ode_solve(field, PARAMS, jnp.zeros(2))
    with pytest.raises(ValueError, match="logdet"):
        ode_sample_and_log_prob(field, PARAMS, x0, logdet="hutchinson")


def test_integer_dtype_grid_is_rejected_and_integer_points_are_cast():
    with pytest.raises(ValueError, match="dtype must be a floating-point dtype"):
        uniform_time_grid(4, dtype=jnp.int32)
    with pytest.raises(ValueError, match="dtype must be a floating-point dtype"):
        memoryless_coefficients(num_steps=4, dtype=jnp.int32)
    x = jnp.array([[1, 2], [0, -1]])
    np.testing.assert_allclose(ode_log_prob(field, PARAMS, x, num_steps=4),
                               ode_log_prob(field, PARAMS, x.astype(jnp.float32), num_steps=4))


def test_memoryless_moments_and_independence(x64):
    n = 20000
    x1, traj = jax.jit(
        lambda k: memoryless_sample(k, field, PARAMS, n, 2, num_steps=40, return_trajectory=True)
    )(jax.random.key(3))
    assert traj.shape == (n, 41, 2)
    np.testing.assert_allclose(traj[:, -1], x1)
    se = np.sqrt(np.diag(COV) / n)
    assert np.all(np.abs(np.asarray(x1.mean(0)) - MEAN) < 4 * se + 0.01)
    np.testing.assert_allclose(np.cov(np.asarray(x1).T), COV, atol=0.05)
    # Memoryless: X_1 is independent of X_0 (the ODE map is strongly correlated instead).
    corr = np.corrcoef(np.asarray(traj[:, 0, 0]), np.asarray(x1[:, 0]))[0, 1]
    assert abs(corr) < 4 / np.sqrt(n)


def test_memoryless_mean_is_exact_for_linear_fields(x64):
    """For Gaussian data the sampler is linear: noise-free paths from 0 carry the mean exactly."""
    coefs = memoryless_coefficients(num_steps=40)
    solve = jax.jit(lambda x, z: memoryless_solve(field, PARAMS, x, z, coefficients=coefs))
    x = solve(jnp.zeros((1, 2)), jnp.zeros((1, 40, 2)))
    np.testing.assert_allclose(x[0], MEAN, atol=1e-3)


def test_memoryless_last_step_is_deterministic_and_first_forgets_x0():
    x0 = jax.random.normal(jax.random.key(4), (5, 2))
    noise = jax.random.normal(jax.random.key(5), (5, 10, 2))
    solve = jax.jit(lambda x, z: memoryless_solve(field, PARAMS, x, z))
    a = solve(x0, noise)
    # The last step's noise is unused.
    b = solve(x0, noise.at[:, -1].set(7.0))
    np.testing.assert_array_equal(a, b)
    # With Gaussian data the first step depends on x0 only through E[X_1 | X_0] = mean.
    c = solve(3.0 * x0, noise)
    np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-5)


def test_fractional_step_counts_are_refused_not_truncated():
    with pytest.raises(ValueError, match="num_steps"):  # was a grid of 3 steps
        uniform_time_grid(3.5)
    with pytest.raises(ValueError, match="num_steps"):
        memoryless_coefficients(num_steps=4.5)
    np.testing.assert_array_equal(uniform_time_grid(np.int64(4)), uniform_time_grid(4))


def test_memoryless_bad_input():
    with pytest.raises(ValueError, match="noise"):
        memoryless_solve(field, PARAMS, jnp.zeros((2, 2)), jnp.zeros((2, 5, 3)), num_steps=5)
    with pytest.raises(ValueError, match="num_samples"):
        memoryless_sample(jax.random.key(0), field, PARAMS, 0, 2)

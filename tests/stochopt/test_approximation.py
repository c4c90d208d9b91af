"""Stochastic approximation with adaptive IS (Algorithm 3): the Kernel on gradient_kernel,
lax.scan and training.fit drivers, Polyak averaging, convergence to the large-sample
optimum."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tailjax.importance import plain_scheme, self_structuring_scheme
from tailjax.base import Kernel
from tailjax.stochopt import (
    SAInfo,
    SAParams,
    SAState,
    run_stochastic_approximation,
    saa_value,
    stochastic_approximation,
)
from tailjax.training import TrainState, fit

from .conftest import RA_SA_BETA as BETA


@pytest.mark.slow
def test_sa_reaches_large_sample_optimum(large_sample_reference, x64):
    p, x_large, ref, theta_ref = large_sample_reference
    scheme = self_structuring_scheme(p.dist, p.loss, BETA, h_grid=jnp.geomspace(0.5, 8.0, 8), pilot_size=512)
    kernel = stochastic_approximation(
        p.loss, scheme, p.theta_set, BETA, batch_size=64, step_scale=0.05,
        step_exponent=0.75, update_every=250, average_start=200,
    )
    state = kernel.init(p.theta_set.feasible_point(jnp.float64), jax.random.PRNGKey(1), u0=5.0)
    state, info = jax.jit(lambda s, k: run_stochastic_approximation(kernel, s, k, 3000))(state, jax.random.PRNGKey(2))
    assert isinstance(state, SAState) and isinstance(info, SAInfo)
    assert info.objective.shape == (3000,)
    np.testing.assert_allclose(info.step_size[:3], 0.05 * np.arange(1, 4) ** -0.75, rtol=1e-12)
    assert int(state.count) == 3000
    value, _ = saa_value(state.theta_avg, p.loss, x_large, BETA)
    assert float(value) <= ref * (1 + 0.02)  # within 2% of the large-sample optimum
    np.testing.assert_allclose(jnp.sum(state.theta_avg), 1.0, atol=1e-9)


def test_sa_kernel_scan_averaging_and_fit(large_sample_reference, x64):
    p, *_ = large_sample_reference
    kernel = stochastic_approximation(
        p.loss, plain_scheme(p.dist), p.theta_set, BETA, batch_size=16, step_scale=0.05,
        update_every=3, average_start=2,
    )
    assert isinstance(kernel, Kernel)
    state = kernel.init(p.theta_set.feasible_point(jnp.float64), jax.random.PRNGKey(0))
    assert isinstance(state.train, TrainState) and isinstance(state.average, SAParams)
    assert float(state.u) == 0.0 and int(state.count) == 0
    step = jax.jit(kernel.step)
    # Polyak average from step average_start on, by hand
    s, thetas = state, []
    for i in range(6):
        s, info = step(s, jax.random.fold_in(jax.random.PRNGKey(1), i), None)
        thetas.append(s.theta)
        assert float(info.step_size) == pytest.approx(0.05 * (i + 1) ** -0.75)
        np.testing.assert_allclose(jnp.sum(s.theta), 1.0, atol=1e-12)
        assert float(jnp.dot(p.mean, s.theta)) >= float(p.theta_set.target) - 1e-9
    np.testing.assert_allclose(s.theta_avg, np.mean(np.asarray(thetas[2:]), axis=0), rtol=1e-12)
    # lax.scan and training.fit drive the same kernel to the same state
    scanned, infos = run_stochastic_approximation(kernel, state, jax.random.PRNGKey(1), 6)
    np.testing.assert_allclose(scanned.theta, s.theta, rtol=1e-12)
    out = fit(kernel, state, jax.random.PRNGKey(1), 6, progress=False)
    np.testing.assert_allclose(out.state.theta_avg, s.theta_avg, rtol=1e-12)
    assert out.history["objective"].shape == (6,) == infos.objective.shape


def test_sa_update_is_projected_sgd_with_the_step_size_schedule(large_sample_reference, x64):
    """One step by hand: u - gamma_n d_u F, Proj(theta - gamma_n d_theta F) on the scheme's
    batch, bitwise."""
    from tailjax.importance import is_objective

    p, *_ = large_sample_reference
    scheme = plain_scheme(p.dist)
    kernel = stochastic_approximation(p.loss, scheme, p.theta_set, BETA, batch_size=8, step_scale=0.3)
    state = kernel.init(p.theta_set.feasible_point(jnp.float64), jax.random.PRNGKey(0), u0=1.0)
    for i in range(3):
        key = jax.random.PRNGKey(10 + i)
        new, info = kernel.step(state, key, None)
        z, log_lr = scheme.sample(jax.random.split(key)[1], state.is_param, 8)
        value, (g_u, g_theta) = jax.value_and_grad(
            lambda u, th: is_objective(u, th, p.loss, z, log_lr, BETA), argnums=(0, 1))(state.u, state.theta)
        gamma = 0.3 * float(i + 1) ** -0.75
        assert float(info.step_size) == gamma and float(info.objective) == float(value)
        assert float(new.u) == float(state.u - gamma * g_u)
        np.testing.assert_array_equal(new.theta, p.theta_set.project(state.theta - gamma * g_theta))
        state = new


def test_sa_bad_input(large_sample_reference):
    p, *_ = large_sample_reference
    scheme = plain_scheme(p.dist)
    with pytest.raises(ValueError, match="step_exponent"):
        stochastic_approximation(p.loss, scheme, p.theta_set, BETA, step_exponent=0.5)
    with pytest.raises(ValueError, match="step_scale"):
        stochastic_approximation(p.loss, scheme, p.theta_set, BETA, step_scale=0.0)
    with pytest.raises(ValueError, match="tail_prob"):
        stochastic_approximation(p.loss, scheme, p.theta_set, 1.0)
    with pytest.raises(ValueError, match="batch_size"):
        stochastic_approximation(p.loss, scheme, p.theta_set, BETA, batch_size=0)
    with pytest.raises(ValueError, match="update_every"):
        stochastic_approximation(p.loss, scheme, p.theta_set, BETA, update_every=0)
    with pytest.raises(ValueError, match="risk_weight"):
        stochastic_approximation(p.loss, scheme, p.theta_set, BETA, risk_weight=1.5)
    kernel = stochastic_approximation(p.loss, scheme, p.theta_set, BETA)
    with pytest.raises(ValueError, match="num_steps"):
        run_stochastic_approximation(kernel, None, jax.random.PRNGKey(0), 0)

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tailjax.flows.gaussian import gaussian_velocity
from tailjax.flows.schedule import (
    cosine_schedule,
    data_prediction,
    eta,
    kappa,
    memoryless_sigma,
    rectified_flow,
)
from tailjax.flows.sde import memoryless_coefficients


def test_rectified_flow_memoryless_closed_forms(x64):
    s = rectified_flow()
    t = jnp.linspace(0.01, 0.99, 50)
    np.testing.assert_allclose(kappa(s, t), 1.0 / t, rtol=1e-12)
    np.testing.assert_allclose(eta(s, t), (1.0 - t) / t, rtol=1e-12)
    np.testing.assert_allclose(memoryless_sigma(s, t), jnp.sqrt(2.0 * (1.0 - t) / t), rtol=1e-12)
    np.testing.assert_allclose(jax.jit(lambda t: eta(s, t))(t), (1.0 - t) / t, rtol=1e-12)


@pytest.mark.parametrize("make", [rectified_flow, cosine_schedule])
def test_derivatives_and_boundary_values(make, x64):
    s = make()
    t = jnp.linspace(0.0, 1.0, 11)
    np.testing.assert_allclose(jax.vmap(jax.grad(s.alpha))(t), s.alpha_dot(t), atol=1e-12)
    np.testing.assert_allclose(jax.vmap(jax.grad(s.beta))(t), s.beta_dot(t), atol=1e-12)
    np.testing.assert_allclose([s.alpha(0.0), s.beta(0.0), s.alpha(1.0), s.beta(1.0)], [0, 1, 1, 0], atol=1e-12)


@pytest.mark.parametrize("make", [rectified_flow, cosine_schedule])
def test_velocity_is_kappa_x_plus_eta_score(make, x64):
    """v = kappa x + eta grad log p_t, checked on Gaussian data with a closed-form score."""
    s = make()
    mean, cov = jnp.array([0.3, -1.0]), jnp.array([[1.5, 0.4], [0.4, 0.7]])
    x, t = jnp.array([0.2, 0.9]), jnp.asarray(0.37)
    a, b = s.alpha(t), s.beta(t)
    st = b**2 * jnp.eye(2) + a**2 * cov
    score = -jnp.linalg.solve(st, x - a * mean)
    v = gaussian_velocity(x, t, mean, cov, s)
    np.testing.assert_allclose(v, kappa(s, t) * x + eta(s, t) * score, rtol=1e-10)


@pytest.mark.parametrize("make", [rectified_flow, cosine_schedule])
def test_data_prediction_inverts_the_interpolant(make, x64):
    s = make()
    k0, k1 = jax.random.split(jax.random.key(0))
    x0, x1 = jax.random.normal(k0, (6, 3)), jax.random.normal(k1, (6, 3))
    t = jnp.array([0.0, 0.1, 0.4, 0.6, 0.9, 1.0])
    xt, vt = s.interpolate(x0, x1, t)
    np.testing.assert_allclose(jax.jit(lambda *a: data_prediction(s, *a))(xt, vt, t), x1, atol=1e-12)


def test_memoryless_grid_never_uses_kappa_at_zero():
    c = memoryless_coefficients(rectified_flow(), 10)
    assert c.ts[0] == 0.0 and c.ts[-1] == 1.0
    # kappa(0) is infinite: its slot is a placeholder 0; everything the sampler uses is finite.
    assert c.kappa[0] == 0.0 and np.all(np.isfinite(c.kappa))
    np.testing.assert_allclose(c.kappa[1:], 1.0 / c.ts[1:], rtol=1e-6)
    assert np.isinf(c.sigma[0]) and c.sigma[-1] == 0.0
    assert np.all(np.isfinite(c.noise_scale))
    # Step 0 is the memoryless transition and the last step is deterministic.
    assert c.noise_scale[0] == 0.0 and c.noise_scale[-1] == 0.0
    np.testing.assert_allclose(c.noise_scale[1:-1], c.sigma[1:-2] * np.sqrt(0.1), rtol=1e-6)


@pytest.mark.parametrize("ts", [[0.0, 0.5], [0.1, 0.5, 1.0], [0.0, 0.6, 0.4, 1.0]])
def test_memoryless_grid_rejects_bad_grids(ts):
    with pytest.raises(ValueError, match="ts"):
        memoryless_coefficients(rectified_flow(), ts=jnp.asarray(ts))

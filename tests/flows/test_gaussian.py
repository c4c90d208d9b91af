import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tailjax.flows.gaussian import (
    gaussian_mixture_log_prob,
    gaussian_mixture_velocity,
    gaussian_velocity,
    tilt_gaussian_mixture,
)
from tailjax.flows.schedule import cosine_schedule, rectified_flow

W = np.array([0.3, 0.7])
M = np.array([[-1.0, 0.5], [1.5, -0.5]])
C = np.array([[[0.5, 0.1], [0.1, 0.3]], [[0.8, -0.2], [-0.2, 0.4]]])


def _log_pt(x, t, schedule):
    """log p_t of the mixture's interpolant, from the marginal N(alpha m_i, beta^2 I + alpha^2 C_i)."""
    a, b = schedule.alpha(t), schedule.beta(t)
    covs = b**2 * jnp.eye(2, dtype=x.dtype) + a**2 * jnp.asarray(C, x.dtype)
    return gaussian_mixture_log_prob(x, W, a * jnp.asarray(M, x.dtype), covs)


@pytest.mark.parametrize("make", [rectified_flow, cosine_schedule])
def test_mixture_velocity_solves_continuity_equation(make, x64):
    """d/dt log p_t + div v + v . grad log p_t = 0 at random points and times."""
    s = make()
    xs = jax.random.normal(jax.random.key(0), (3, 2))
    ts = jnp.array([0.05, 0.5, 0.95])

    def residual(x, t):
        v = gaussian_mixture_velocity(x, t, W, M, C, s)
        div = jnp.trace(jax.jacfwd(gaussian_mixture_velocity)(x, t, W, M, C, s))
        dlogp_dt = jax.grad(_log_pt, argnums=1)(x, t, s)
        return dlogp_dt + div + v @ jax.grad(_log_pt)(x, t, s)

    np.testing.assert_allclose(jax.jit(jax.vmap(residual))(xs, ts), 0.0, atol=1e-9)


def test_single_component_mixture_is_gaussian(x64):
    x, t = jnp.array([0.4, -0.3]), jnp.asarray(0.6)
    mix = jax.jit(lambda x, t: gaussian_mixture_velocity(x, t, jnp.ones(1), M[:1], C[:1]))
    one = jax.jit(lambda x, t: gaussian_velocity(x, t, M[0], C[0]))
    np.testing.assert_allclose(mix(x, t), one(x, t), rtol=1e-12)


def test_velocity_at_endpoints(x64):
    x = jnp.array([0.4, -0.3])
    # t = 0: E[X_1] - x for rectified flow; t = 1: velocity of the data's conditional noise.
    np.testing.assert_allclose(gaussian_velocity(x, 0.0, M[0], C[0]), M[0] - x, rtol=1e-12)


def test_tilt_matches_numerical_reweighting(x64):
    """The tilted mixture equals p(x) exp(c.x) / Z on a fine grid."""
    c = jnp.array([0.7, -0.4])
    w2, m2, c2 = tilt_gaussian_mixture(W, M, C, c)
    g = jnp.linspace(-7.0, 7.0, 281)
    pts = jnp.stack(jnp.meshgrid(g, g), -1).reshape(-1, 2)
    logp = jax.jit(jax.vmap(lambda x: gaussian_mixture_log_prob(x, W, M, C)))(pts) + pts @ c
    logq = jax.jit(jax.vmap(lambda x: gaussian_mixture_log_prob(x, w2, m2, c2)))(pts)
    dx = (g[1] - g[0]) ** 2
    logp = logp - jax.scipy.special.logsumexp(logp) - jnp.log(dx)
    np.testing.assert_allclose(jnp.exp(logp), jnp.exp(logq), rtol=1e-5, atol=1e-12)


def test_shape_errors():
    with pytest.raises(ValueError, match="means"):
        gaussian_mixture_velocity(jnp.zeros(3), 0.5, W, M, C)
    with pytest.raises(ValueError, match="covs"):
        gaussian_velocity(jnp.zeros(2), 0.5, M[0], jnp.eye(3))
    with pytest.raises(ValueError, match="weights"):
        gaussian_mixture_velocity(jnp.zeros(2), 0.5, jnp.ones(3), M, C)

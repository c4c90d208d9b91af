import jax
import jax.numpy as jnp
import numpy as np
import optax

from tailjax.flows.adjoint import adjoint_matching
from tailjax.flows.gaussian import gaussian_velocity
from tailjax.flows.girsanov import memoryless_sample_and_log_weight, path_log_weight
from tailjax.flows.sde import memoryless_coefficients

COV = np.eye(2)
base = lambda x, t: gaussian_velocity(x, t, np.zeros(2), COV)
field = lambda m, x, t: gaussian_velocity(x, t, m, COV)


def test_identical_fields_have_zero_log_weight():
    coefs = memoryless_coefficients(num_steps=8)
    traj = jax.random.normal(jax.random.key(0), (9, 2))
    lw = jax.jit(lambda p: path_log_weight(field, jnp.zeros(2), base, p, coefs))(traj)
    np.testing.assert_allclose(lw, 0.0, atol=1e-6)


def test_path_weights_recover_the_base_distribution(x64):
    """Samples of N((1.5, -1), I) reweighted by dP_base/dP_theta have the base's moments."""
    m = jnp.array([1.5, -1.0])
    x, lw = jax.jit(lambda k: memoryless_sample_and_log_weight(k, field, m, base, 10000, 2, num_steps=20))(
        jax.random.key(1)
    )
    w = jnp.exp(lw)
    assert abs(float(w.mean()) - 1.0) < 0.1  # E_theta[dP_base / dP_theta] = 1
    wn = w / w.sum()
    np.testing.assert_allclose(wn @ x, [0.0, 0.0], atol=0.1)
    np.testing.assert_allclose(wn @ (x**2), [1.0, 1.0], atol=0.15)
    np.testing.assert_allclose(x.mean(0), m, atol=0.05)


def test_weighted_kernel_ess_is_high_at_the_optimum(optax_promotion):
    """At the exact tilt N(c, I) of N(0, I) with r = c.x, dP*/dP_theta = 1 on every path."""
    c = jnp.array([0.8, -0.4])
    kernel = adjoint_matching(field, base, lambda x, _: c @ x, optax.sgd(0.0), 2, batch_size=128,
                              num_steps=20, importance_weighting=True)
    _, info = jax.jit(kernel.step)(kernel.init(c), jax.random.key(2))
    assert float(info.ess) > 0.9
    _, info_far = jax.jit(kernel.step)(kernel.init(jnp.array([-2.0, 2.0])), jax.random.key(2))
    assert float(info_far.ess) < 0.5 * float(info.ess)

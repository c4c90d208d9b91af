import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.optimize import brentq, minimize_scalar

from tailjax.dro import kl_dro_loss, kl_dro_params, kl_dual, kl_tilted_divergence, kl_worst_case
from tailjax.training import fit, gradient_kernel, minibatches

F = np.array([0.3, 1.2, -0.5, 2.0, 0.7])
P = np.array([0.1, 0.3, 0.2, 0.15, 0.25])


def _primal_closed_form(f, p, rho):
    """sup_{KL(q||p) <= rho} E_q f: the tilted q ~ p exp(f / lam) with KL(q || p) = rho."""
    def kl(lam):
        q = p * np.exp((f - f.max()) / lam)
        q /= q.sum()
        return np.sum(q * np.log(q / p)), q
    lam = brentq(lambda l: kl(l)[0] - rho, 1e-2, 1e4, xtol=1e-14)
    q = kl(lam)[1]
    return float(q @ f), lam, q


@pytest.mark.parametrize("rho", [0.01, 0.1, 0.5])
def test_kl_dual_equals_closed_form_worst_case(rho, x64):
    value_ref, lam_ref, q = _primal_closed_form(F, P, rho)
    assert abs(np.sum(q * np.log(q / P)) - rho) < 1e-9
    f, p = jnp.asarray(F), jnp.asarray(P)
    value, lam = jax.jit(lambda f, p: kl_worst_case(f, rho, p))(f, p)
    np.testing.assert_allclose(value, value_ref, rtol=1e-8)
    np.testing.assert_allclose(lam, lam_ref, rtol=1e-6)
    # the dual at any lam is an upper bound, tight at lam*; scipy's minimum agrees
    res = minimize_scalar(lambda l: float(kl_dual(f, l, rho, p)), bounds=(1e-3, 1e3), method="bounded",
                          options={"xatol": 1e-10})
    np.testing.assert_allclose(res.fun, value_ref, rtol=1e-6)
    for l in (0.1, 1.0, 10.0):
        assert float(kl_dual(f, l, rho, p)) >= value_ref - 1e-10
    np.testing.assert_allclose(kl_tilted_divergence(f, lam, p), rho, rtol=1e-6)


def test_kl_worst_case_saturates_at_the_max(x64):
    f, p = jnp.asarray(F), jnp.asarray(P)
    rho = -np.log(P[np.argmax(F)]) + 0.1  # all mass on the maximiser is feasible
    value, lam = kl_worst_case(f, rho, p)
    assert float(value) == F.max() and float(lam) == 0.0


def test_kl_uniform_weights_default_and_bad_input():
    f = jnp.asarray(F, jnp.float32)
    np.testing.assert_allclose(kl_dual(f, 0.7, 0.2), kl_dual(f, 0.7, 0.2, jnp.full(5, 0.2, jnp.float32)), rtol=1e-6)
    with pytest.raises(ValueError, match="lam"):
        kl_dual(f, -1.0, 0.1)
    with pytest.raises(ValueError, match="radius"):
        kl_dual(f, 1.0, -0.1)
    with pytest.raises(ValueError, match="losses"):
        kl_worst_case(jnp.zeros((0,)), 0.1)
    with pytest.raises(ValueError, match="losses"):
        kl_worst_case(jnp.stack([f, f + 1.0]), 0.1)


def test_kl_dro_loss_trains_and_matches_the_dual():
    x = jax.random.normal(jax.random.key(0), (64, 2))
    y = x @ jnp.array([1.0, -2.0]) + 0.1 * jax.random.normal(jax.random.key(1), (64,))
    data = (x, y)
    loss = lambda w, s: (jnp.dot(w, s[0]) - s[1]) ** 2
    kl_loss = functools.partial(kl_dro_loss, loss_fn=loss, radius=0.1)
    params = kl_dro_params(jnp.zeros(2), lam=2.0)
    # at fixed (w, lam) the loss is the dual of the batch losses
    losses = jax.vmap(loss, in_axes=(None, 0))(params[0], data)
    value, aux = jax.jit(kl_loss)(params, data, None)
    np.testing.assert_allclose(value, kl_dual(losses, 2.0, 0.1), rtol=1e-5)
    np.testing.assert_allclose(aux["lam"], 2.0, rtol=1e-6)
    kernel = gradient_kernel(kl_loss, optax.adam(5e-2))
    res = fit(kernel, kernel.init(params), jax.random.key(2), 300,
              batches=minibatches(jax.random.key(3), data, 64), progress=False)
    w, log_lam = res.state.params
    np.testing.assert_allclose(w, [1.0, -2.0], atol=0.1)
    assert res.history["loss"][-1] < res.history["loss"][0]
    assert res.history["aux.lam"].shape == (300,)
    with pytest.raises(ValueError, match="lam"):
        kl_dro_params(jnp.zeros(2), lam=0.0)
    with pytest.raises(ValueError, match="radius"):
        kl_dro_loss(params, data, None, loss_fn=loss, radius=-1.0)

import functools

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.scipy.stats import norm

from tailjax.nn.vae import (
    VAE,
    elbo,
    gaussian_kl,
    merge_params,
    reconstruction_loss,
    split_params,
    vae_loss,
    vae_sample,
)
from tailjax.training import gradient_kernel


def _vae(cond_dim=None):
    vae = VAE((3, 2), latent_dim=2, hidden=(16,), obs_std=0.3)
    cond = None if cond_dim is None else jnp.zeros(cond_dim)
    return vae, jax.jit(vae.init)(jax.random.key(0), jnp.zeros((3, 2)), jnp.zeros(2), cond)


def test_gaussian_kl_matches_distrax():
    m, ls = jnp.array([0.3, -1.2, 0.0]), jnp.array([-0.5, 0.2, 0.0])
    ref = distrax.MultivariateNormalDiag(m, jnp.exp(ls)).kl_divergence(
        distrax.MultivariateNormalDiag(jnp.zeros(3), jnp.ones(3)))
    np.testing.assert_allclose(gaussian_kl(m, ls), ref, rtol=1e-5)


def test_elbo_is_decoder_log_likelihood_minus_kl():
    vae, params = _vae()
    x = jax.random.normal(jax.random.key(1), (3, 2))
    key = jax.random.key(2)
    mean, log_std = vae.apply(params, x, method=VAE.encode)
    z = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
    x_hat = vae.apply(params, z, method=VAE.decode)
    ref = jnp.sum(norm.logpdf(x, x_hat, 0.3)) - gaussian_kl(mean, log_std)
    np.testing.assert_allclose(jax.jit(lambda p: elbo(vae, p, key, x))(params), ref, rtol=1e-5)
    # the ELBO bounds the likelihood: over many z its mean is below log E_q[p(x,z)/q(z)]
    @jax.jit
    def bound_and_iwae(keys):
        vals = jax.vmap(lambda k: elbo(vae, params, k, x))(keys)
        zs = jax.vmap(lambda k: mean + jnp.exp(log_std) * jax.random.normal(k, mean.shape))(keys)
        dec = vae.apply(params, zs, method=VAE.decode)
        log_w = (jnp.sum(norm.logpdf(x, dec, 0.3), axis=(1, 2)) + jnp.sum(norm.logpdf(zs), -1)
                 - jnp.sum(norm.logpdf(zs, mean, jnp.exp(log_std)), -1))
        return vals, jax.nn.logsumexp(log_w) - jnp.log(2000.0)

    vals, iwae = bound_and_iwae(jax.random.split(jax.random.key(3), 2000))
    assert float(jnp.mean(vals)) <= float(iwae) + 1e-3


def test_split_merge_roundtrip_and_conditioning():
    vae, params = _vae(cond_dim=4)
    enc, dec = split_params(params)
    back = merge_params(enc, dec)
    assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(params)
    x, z = jax.jit(lambda k: vae_sample(k, vae, params, jnp.ones(4)))(jax.random.key(0))
    assert x.shape == (3, 2) and z.shape == (2,)
    mean, z2 = jax.jit(lambda k: vae_sample(k, vae, params, jnp.ones(4), noisy=False))(jax.random.key(0))
    np.testing.assert_allclose(z2, z)  # same latent; x = mean + obs_std * noise
    assert 0 < float(jnp.max(jnp.abs(x - mean))) < 5 * 0.3
    xb = jnp.ones((5, 3, 2))
    batch = (xb, jnp.ones((5, 4)))
    both = jax.jit(lambda p: (vae_loss(p, batch, jax.random.key(1), vae=vae),
                              reconstruction_loss(p, batch, jax.random.key(1), vae=vae)))(params)
    assert all(np.isfinite(float(v)) and aux == {} for v, aux in both)
    with pytest.raises(ValueError, match="batch"):
        vae_loss(params, jnp.ones((0, 3, 2)), jax.random.key(1), vae=vae)


def test_vae_loss_is_the_mean_negative_elbo_per_coordinate():
    vae, params = _vae()
    x = jax.random.normal(jax.random.key(1), (4, 3, 2))
    key = jax.random.key(2)
    keys = jax.random.split(key, 4)
    value, _ = jax.jit(lambda p: vae_loss(p, x, key, vae=vae))(params)
    ref = -jnp.mean(jnp.stack([elbo(vae, params, k, xi) for k, xi in zip(keys, x)])) / 6
    np.testing.assert_allclose(value, ref, rtol=1e-5)


@pytest.mark.slow
def test_training_lowers_the_loss():
    vae, params = _vae()
    x = jax.random.normal(jax.random.key(1), (64, 3, 2)) * jnp.array([1.0, 0.1])
    kernel = gradient_kernel(functools.partial(vae_loss, vae=vae), optax.adam(1e-2))

    @jax.jit
    def run(params):
        def step(state, k):
            state, info = kernel.step(state, k, x)
            return state, info.loss
        state, losses = jax.lax.scan(step, kernel.init(params), jax.random.split(jax.random.key(2), 200))
        return state.params, losses

    params2, losses = run(params)
    assert float(losses[-20:].mean()) < 0.5 * float(losses[:5].mean())
    r0, _ = reconstruction_loss(params, x, jax.random.key(3), vae=vae)
    r1, _ = reconstruction_loss(params2, x, jax.random.key(3), vae=vae)
    assert float(r1) < float(r0)


def test_encode_decode_sample_perturbs_a_real_point_through_the_posterior():
    from tailjax.nn.vae import vae_encode_decode_sample

    vae, params = _vae()
    x = jnp.linspace(-1.0, 1.0, 6).reshape(3, 2)
    out, z = jax.jit(lambda k: vae_encode_decode_sample(k, vae, params, x, noisy=False))(jax.random.key(1))
    mean, log_std = vae.apply(params, x, method=VAE.encode)
    eps = jax.random.normal(jax.random.split(jax.random.key(1))[0], mean.shape)
    np.testing.assert_allclose(z, mean + jnp.exp(log_std) * eps, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out, vae.apply(params, z, method=VAE.decode), rtol=1e-5, atol=1e-6)
    noisy, z2 = vae_encode_decode_sample(jax.random.key(1), vae, params, x)
    np.testing.assert_allclose(z2, z, rtol=1e-5, atol=1e-6)
    assert not np.allclose(noisy, out)

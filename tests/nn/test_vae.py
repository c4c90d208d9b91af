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


def _vae(cond_dim=None):
    vae = VAE((3, 2), latent_dim=2, hidden=(16,), obs_std=0.3)
    cond = None if cond_dim is None else jnp.zeros(cond_dim)
    return vae, vae.init(jax.random.key(0), jnp.zeros((3, 2)), jnp.zeros(2), cond)


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
    keys = jax.random.split(jax.random.key(3), 2000)
    vals = jax.vmap(lambda k: elbo(vae, params, k, x))(keys)
    zs = jax.vmap(lambda k: mean + jnp.exp(log_std) * jax.random.normal(k, mean.shape))(keys)
    log_w = jax.vmap(lambda zz: jnp.sum(norm.logpdf(x, vae.apply(params, zz, method=VAE.decode), 0.3))
                     + jnp.sum(norm.logpdf(zz)) - jnp.sum(norm.logpdf(zz, mean, jnp.exp(log_std))))(zs)
    iwae = jax.nn.logsumexp(log_w) - jnp.log(2000.0)
    assert float(jnp.mean(vals)) <= float(iwae) + 1e-3


def test_split_merge_roundtrip_and_conditioning():
    vae, params = _vae(cond_dim=4)
    enc, dec = split_params(params)
    back = merge_params(enc, dec)
    assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(params)
    x, z = jax.jit(lambda k: vae_sample(k, vae, params, jnp.ones(4)))(jax.random.key(0))
    assert x.shape == (3, 2) and z.shape == (2,)
    mean, _ = vae_sample(jax.random.key(0), vae, params, jnp.ones(4), noisy=False)
    np.testing.assert_allclose(x - mean, 0.3 * (x - mean) / 0.3)  # noise added at obs_std
    xb = jnp.ones((5, 3, 2))
    assert np.isfinite(float(vae_loss(vae, params, jax.random.key(1), xb, jnp.ones((5, 4)))))
    assert np.isfinite(float(reconstruction_loss(vae, params, jax.random.key(1), xb, jnp.ones((5, 4)))))


def test_training_lowers_the_loss():
    vae, params = _vae()
    x = jax.random.normal(jax.random.key(1), (64, 3, 2)) * jnp.array([1.0, 0.1])
    opt = optax.adam(1e-2)

    @jax.jit
    def run(params):
        def step(carry, k):
            p, o = carry
            g = jax.grad(lambda q: vae_loss(vae, q, k, x))(p)
            u, o = opt.update(g, o, p)
            return (optax.apply_updates(p, u), o), vae_loss(vae, p, k, x)
        (p, _), losses = jax.lax.scan(step, (params, opt.init(params)), jax.random.split(jax.random.key(2), 200))
        return p, losses

    with jax.numpy_dtype_promotion("standard"):  # optax's Adam under strict promotion
        params2, losses = run(params)
    assert float(losses[-20:].mean()) < 0.5 * float(losses[:5].mean())
    r0 = reconstruction_loss(vae, params, jax.random.key(3), x)
    r1 = reconstruction_loss(vae, params2, jax.random.key(3), x)
    assert float(r1) < float(r0)

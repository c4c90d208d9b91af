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
    both = jax.jit(lambda p: (vae_loss(vae, p, jax.random.key(1), xb, jnp.ones((5, 4))),
                              reconstruction_loss(vae, p, jax.random.key(1), xb, jnp.ones((5, 4)))))(params)
    assert all(np.isfinite(float(v)) for v in both)


@pytest.mark.slow
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

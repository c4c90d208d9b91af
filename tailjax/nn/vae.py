"""Gaussian variational autoencoder (Kingma & Welling) with an optional conditioning vector.

Encoder q_phi(z | x, c) = N(m(x, c), diag s(x, c)^2), prior N(0, I), decoder
p_theta(x | z, c) = N(g(z, c), obs_std^2 I) with a fixed observation scale. Parameters are
split into the ``encoder`` and ``decoder`` subtrees of ``params["params"]`` so that one of
them can be frozen (GAS-DRO's VAE ambiguity set perturbs the decoder only).

Functions act on one sample (x of ``data_shape``, c a vector or None); vmap for batches.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from tailjax.nn.ddpm import _floating

__all__ = [
    "VAE",
    "gaussian_kl",
    "elbo",
    "vae_loss",
    "vae_sample",
    "vae_encode_decode_sample",
    "reconstruction_loss",
    "split_params",
    "merge_params",
]


class _MLP(nn.Module):
    features: Sequence[int]
    out: int

    @nn.compact
    def __call__(self, h):
        for width in self.features:
            h = nn.silu(nn.Dense(width)(h))
        return nn.Dense(self.out)(h)


class VAE(nn.Module):
    """MLP encoder/decoder over data of shape ``data_shape`` (flattened inside)."""

    data_shape: tuple[int, ...]
    latent_dim: int = 8
    hidden: Sequence[int] = (128, 128)
    obs_std: float = 0.1

    def setup(self):
        d = 1
        for s in self.data_shape:
            d *= s
        self.encoder = _MLP(tuple(self.hidden), 2 * self.latent_dim)
        self.decoder = _MLP(tuple(reversed(tuple(self.hidden))), d)

    def encode(self, x, cond=None):
        h = _floating(x.reshape(x.shape[: x.ndim - len(self.data_shape)] + (-1,)))
        if cond is not None:
            h = jnp.concatenate([h, cond.astype(h.dtype)], axis=-1)
        out = self.encoder(h)
        mean, log_std = jnp.split(out, 2, axis=-1)
        return mean, jnp.clip(log_std, -8.0, 4.0)

    def decode(self, z, cond=None):
        h = _floating(z)
        if cond is not None:
            h = jnp.concatenate([h, cond.astype(h.dtype)], axis=-1)
        out = self.decoder(h)
        return out.reshape(out.shape[:-1] + tuple(self.data_shape))

    def __call__(self, x, z, cond=None):
        self.encode(x, cond)
        return self.decode(z, cond)


def split_params(params: Any) -> tuple[Any, Any]:
    """(encoder, decoder) subtrees of VAE ``params``."""
    p = params["params"]
    return p["encoder"], p["decoder"]


def merge_params(encoder: Any, decoder: Any) -> Any:
    """Inverse of :func:`split_params`."""
    return {"params": {"encoder": encoder, "decoder": decoder}}


def gaussian_kl(mean: Array, log_std: Array) -> Array:
    """KL(N(mean, diag exp(log_std)^2) || N(0, I)), summed over the last axis."""
    return 0.5 * jnp.sum(mean**2 + jnp.exp(2.0 * log_std) - 1.0 - 2.0 * log_std, axis=-1)


def _log_lik(vae: VAE, x, mean):
    d = x.size
    r = (x - mean).reshape(-1)
    return -0.5 * jnp.sum(r**2) / vae.obs_std**2 - d * (jnp.log(vae.obs_std) + 0.5 * jnp.log(2 * jnp.pi))


def elbo(
    vae: VAE, params: Any, key: PRNGKeyArray, x: Array, cond: Array | None = None
) -> Float[Array, ""]:
    """One-sample reparameterised ELBO of one data point: E_q log p(x|z) - KL(q || prior)."""
    mean, log_std = vae.apply(params, x, cond, method=VAE.encode)
    z = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape, mean.dtype)
    x_mean = vae.apply(params, z, cond, method=VAE.decode)
    return _log_lik(vae, x, x_mean) - gaussian_kl(mean, log_std)


def _split_batch(batch):
    """A batch is ``x`` (n, *data_shape) or a pair ``(x, cond)`` with ``cond`` (n, c)."""
    x, cond = batch if isinstance(batch, (tuple, list)) else (batch, None)
    if jnp.ndim(x) < 1 or jnp.size(x) == 0:
        raise ValueError(f"batch x must hold a non-empty batch, got shape {jnp.shape(x)}")
    return x, cond


def _check_data_shape(vae: VAE, x: Array) -> None:
    if tuple(x.shape[1:]) != tuple(vae.data_shape):
        raise ValueError(f"batch x must have shape (n, *{tuple(vae.data_shape)}), got {x.shape}")


def vae_loss(
    params: Any,
    batch: Float[Array, "n ..."] | tuple[Float[Array, "n ..."], Float[Array, "n c"]],
    key: PRNGKeyArray,
    *,
    vae: VAE,
) -> tuple[Float[Array, ""], dict]:
    """Negative ELBO averaged over the batch, per coordinate: ``(value, {})``.

    ``batch`` is ``x`` (n, *data_shape) or ``(x, cond)``; the library's loss order, so
    ``functools.partial(vae_loss, vae=vae)`` trains with
    :func:`tailjax.training.gradient_kernel`.
    """
    x, cond = _split_batch(batch)
    _check_data_shape(vae, x)
    keys = jax.random.split(key, x.shape[0])
    if cond is None:
        values = jax.vmap(lambda k, xi: elbo(vae, params, k, xi))(keys, x)
    else:
        values = jax.vmap(lambda k, xi, ci: elbo(vae, params, k, xi, ci))(keys, x, cond)
    return -jnp.mean(values) / x[0].size, {}


def reconstruction_loss(
    params: Any,
    batch: Float[Array, "n ..."] | tuple[Float[Array, "n ..."], Float[Array, "n c"]],
    key: PRNGKeyArray,
    *,
    vae: VAE,
) -> tuple[Float[Array, ""], dict]:
    """E_{x ~ batch} E_{z ~ q(z|x)} ||x - g(z)||^2 / dim, the VAE's reconstruction loss J:
    ``(value, {})``, ``batch`` as in :func:`vae_loss`."""
    x, cond = _split_batch(batch)
    _check_data_shape(vae, x)
    mean, log_std = vae.apply(params, x, cond, method=VAE.encode)
    z = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape, mean.dtype)
    x_hat = vae.apply(params, z, cond, method=VAE.decode)
    return jnp.mean((x - x_hat) ** 2), {}


def vae_sample(
    key: PRNGKeyArray, vae: VAE, params: Any, cond: Array | None = None, noisy: bool = True
) -> tuple[Array, Array]:
    """Draw z ~ N(0, I) and x ~ p(x | z, c): returns (x, z). ``noisy=False`` gives g(z, c)."""
    kz, kx = jax.random.split(key)
    z = jax.random.normal(kz, (vae.latent_dim,), jnp.float32)
    mean = vae.apply(params, z, cond, method=VAE.decode)
    if not noisy:
        return mean, z
    return mean + vae.obs_std * jax.random.normal(kx, mean.shape, mean.dtype), z


def vae_encode_decode_sample(
    key: PRNGKeyArray, vae: VAE, params: Any, x: Array, cond: Array | None = None, noisy: bool = True
) -> tuple[Array, Array]:
    """Encode-perturb-decode one real point: z ~ q(z | x, c), x' ~ p(x' | z, c); returns (x', z).

    The perturbation of ``x`` is the encoder's posterior noise plus the decoder's; the decoder
    parameters in ``params`` may differ from those the encoder was trained with (GAS-DRO's
    perturbed decoder). ``noisy=False`` gives g(z, c).
    """
    kz, kx = jax.random.split(key)
    mean, log_std = vae.apply(params, x, cond, method=VAE.encode)
    z = mean + jnp.exp(log_std) * jax.random.normal(kz, mean.shape, mean.dtype)
    out = vae.apply(params, z, cond, method=VAE.decode)
    if not noisy:
        return out, z
    return out + vae.obs_std * jax.random.normal(kx, out.shape, out.dtype), z

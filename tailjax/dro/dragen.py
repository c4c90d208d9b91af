"""DRAGEN-style DRO: a Wasserstein ball in the latent space of a generative model (VAE).

    min_w E_{x ~ P_0} sup_{z'} [ f(w, g(z', x)) - gamma ||z' - e(x)||^2 ],

with e the encoder mean and g the decoder; adversarial latents are found by gradient ascent
from e(x), the decoded points replace the data in the loss (the label, if any, is kept by
``decode``).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from tailjax.dro.erm import check_batch
from tailjax.dro.wasserstein import _check_ascent, penalty_ascent

__all__ = ["dragen_loss"]


def dragen_loss(
    params: Any,
    batch: Any,
    key: jax.Array,
    *,
    loss_fn: Callable[[Any, Any], jax.Array],
    encode: Callable[[Any], jax.Array],
    decode: Callable[[jax.Array, Any], Any],
    penalty: float = 1.0,
    steps: int = 15,
    step_size: float = 0.05,
) -> tuple[jax.Array, dict]:
    """The latent-space penalty surrogate averaged over ``batch``: ``(value, {})``.

    ``encode(sample) -> z`` (latent code of one sample) and ``decode(z, sample) -> sample'``
    (a sample with its data replaced by the decoding of z) close over the frozen VAE;
    ``penalty`` is gamma, ``steps`` and ``step_size`` the latent gradient ascent.
    """
    del key
    _check_ascent(penalty, steps, step_size)
    check_batch(batch)

    def robust_loss(w, sample):
        z0 = jax.lax.stop_gradient(encode(sample))
        value = lambda z: loss_fn(jax.lax.stop_gradient(w), decode(z, sample))
        z_adv = penalty_ascent(value, z0, penalty, steps, step_size)
        return loss_fn(w, jax.lax.stop_gradient(decode(z_adv, sample)))

    return jnp.mean(jax.vmap(robust_loss, in_axes=(None, 0))(params, batch)), {}

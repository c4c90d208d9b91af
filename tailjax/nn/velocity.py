"""A velocity field v(x, t[, context]) for flow matching: an MLP on a sinusoidal time embedding.

The module works for any data dimension (read from the last axis of ``x``) and any leading
batch shape, or on a single sample: ``x: (..., d)``, ``t: (...)`` or a scalar (broadcast),
``context: (..., c)``. Parameters are an explicit pytree (``module.init`` / ``module.apply``).
"""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import check_positive, nan_where, traced_below_zero

__all__ = ["sinusoidal_embedding", "VelocityField"]


def sinusoidal_embedding(
    t: Float[ArrayLike, "..."], dim: int, max_frequency: float = 100.0
) -> Float[Array, "... dim"]:
    """[sin(w_i t), cos(w_i t)] with ``dim // 2`` frequencies w_i geometric in [1, max_frequency].

    Args:
      t: times, any shape (typically in [0, 1]).
      dim: even embedding size >= 2.
      max_frequency: largest angular frequency (> 1 resolves fine time structure on [0, 1]);
        a traced one <= 0 gives NaN.
    """
    if dim < 2 or dim % 2:
        raise ValueError(f"dim must be an even integer >= 2, got {dim}")
    check_positive(max_frequency, "max_frequency")
    t = jnp.asarray(t)
    if not jnp.issubdtype(t.dtype, jnp.floating):
        t = t.astype(jnp.result_type(float))
    half = dim // 2
    freqs = jnp.exp(jnp.linspace(0.0, jnp.log(max_frequency), half, dtype=t.dtype))
    angles = t[..., None] * freqs
    out = jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)
    return nan_where(traced_below_zero(max_frequency, allow_zero=False), out)


class VelocityField(nn.Module):
    """MLP velocity field v(x, t[, context]) with a sinusoidal time embedding.

    Attributes:
      hidden: widths of the hidden layers.
      time_embedding_dim: size of the sinusoidal embedding of t (even).
      max_frequency: largest frequency of the embedding.
      activation: hidden activation.
      zero_init_output: start with v = 0 (handy for residual fine-tuning heads).
      linear_skip: add a time-dependent linear map A(t) x + b(t), with A and b read from the
        time embedding (zero at initialisation). Gaussian data have exactly such a velocity,
        and the skip makes the field extrapolate linearly far from the data, where an MLP
        alone bends (what matters when a fine-tune moves mass to several standard deviations).
    """

    hidden: Sequence[int] = (256, 256, 256)
    time_embedding_dim: int = 64
    max_frequency: float = 100.0
    activation: Callable[[Array], Array] = nn.silu
    zero_init_output: bool = False
    linear_skip: bool = False

    @nn.compact
    def __call__(
        self,
        x: Float[ArrayLike, "... d"],
        t: Float[ArrayLike, "..."],
        context: Float[ArrayLike, "... c"] | None = None,
    ) -> Float[Array, "... d"]:
        if self.time_embedding_dim < 2 or self.time_embedding_dim % 2:
            raise ValueError(f"time_embedding_dim must be an even integer >= 2, got {self.time_embedding_dim}")
        x = jnp.asarray(x)
        if x.ndim == 0:
            raise ValueError("x must have a feature axis: shape (..., d)")
        t = jnp.broadcast_to(jnp.asarray(t, x.dtype), x.shape[:-1])
        emb = sinusoidal_embedding(t, self.time_embedding_dim, self.max_frequency)
        parts = [x, emb]
        if context is not None:
            context = jnp.asarray(context, x.dtype)
            parts.append(jnp.broadcast_to(context, x.shape[:-1] + context.shape[-1:]))
        h = jnp.concatenate(parts, axis=-1)
        for width in self.hidden:
            h = self.activation(nn.Dense(width)(h))
        kernel_init = nn.initializers.zeros if self.zero_init_output else nn.linear.default_kernel_init
        out = nn.Dense(x.shape[-1], kernel_init=kernel_init)(h)
        if self.linear_skip:
            d = x.shape[-1]
            coef = nn.Dense(d * d + d, kernel_init=nn.initializers.zeros, name="skip")(emb)
            a = coef[..., : d * d].reshape(coef.shape[:-1] + (d, d))
            out = out + jnp.einsum("...ij,...j->...i", a, x) + coef[..., d * d :]
        return out

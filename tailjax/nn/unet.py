"""A small UNet eps_theta(x, t, cond) for small images (8 x 8, 16 x 16): a DDPM noise network or a
flow velocity field.

Two resolution levels below the input (16 -> 8 -> 4 for 16 x 16), residual blocks with
GroupNorm, the sinusoidal step embedding (plus an optional conditioning vector such as a
one-hot label) shifting every block, skip connections by concatenation.

As a velocity field v(x, t, c) with t in [0, 1] (:mod:`tailjax.flows`), set ``time_scale=1000``
so that the step embedding resolves t, and ``num_classes`` to pass integer class labels::

    net = UNet(channels=(32, 64), in_channels=1, time_scale=1000.0, num_classes=10)
    velocity_fn = lambda p, x, t, c: net.apply(p, x, t, c)   # x: (H, W, 1), c: an int label
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from tailjax.nn.ddpm import _floating, timestep_embedding

__all__ = ["UNet"]


class _ResBlock(nn.Module):
    channels: int

    @nn.compact
    def __call__(self, h, emb):
        groups = min(8, self.channels)
        r = nn.Conv(self.channels, (3, 3))(nn.silu(nn.GroupNorm(num_groups=min(8, h.shape[-1]))(h)))
        r = r + nn.Dense(self.channels)(emb)[..., None, None, :]
        r = nn.Conv(self.channels, (3, 3))(nn.silu(nn.GroupNorm(num_groups=groups)(r)))
        skip = h if h.shape[-1] == self.channels else nn.Conv(self.channels, (1, 1))(h)
        return skip + r


class UNet(nn.Module):
    """x: (..., H, W) with ``in_channels=None`` or (..., H, W, C); t: (...,) -> shape of x.

    H and W must be divisible by 2 ** len(channels[1:]). ``cond``: a conditioning vector
    (..., c), or with ``num_classes`` integer labels (...,) (one-hot encoded inside).
    ``time_scale`` multiplies t before the step embedding (1 for DDPM steps 1..T, about 1000
    for flow times in [0, 1]).
    """

    channels: Sequence[int] = (32, 64, 64)
    time_dim: int = 64
    in_channels: int | None = None
    time_scale: float = 1.0
    num_classes: int | None = None

    @nn.compact
    def __call__(self, x, t, cond=None):
        if len(self.channels) < 1 or min(self.channels) < 1:
            raise ValueError(f"channels must name at least one level, all >= 1, got {tuple(self.channels)}")
        if self.num_classes is not None and cond is not None:
            cond = jax.nn.one_hot(jnp.asarray(cond), self.num_classes, dtype=_floating(jnp.asarray(x)).dtype)
        if self.time_scale != 1.0:
            t = jnp.asarray(t, _floating(jnp.asarray(x)).dtype) * self.time_scale
        h = x[..., None] if self.in_channels is None else x
        lead = h.shape[:-3]
        factor = 2 ** (len(self.channels) - 1)
        if h.shape[-3] % factor or h.shape[-2] % factor:
            raise ValueError(f"image size {h.shape[-3:-1]} must be divisible by {factor}")
        h = _floating(h.reshape((-1,) + h.shape[-3:]))
        emb = timestep_embedding(jnp.broadcast_to(t, lead).reshape(-1), self.time_dim, dtype=h.dtype)
        if cond is not None:
            c = jnp.broadcast_to(cond, lead + cond.shape[-1:]).reshape(-1, cond.shape[-1])
            emb = jnp.concatenate([emb, c.astype(h.dtype)], axis=-1)
        emb = nn.Dense(self.time_dim)(nn.silu(nn.Dense(self.time_dim)(emb)))
        h = nn.Conv(self.channels[0], (3, 3))(h)
        skips = []
        for i, ch in enumerate(self.channels):
            h = _ResBlock(ch)(h, emb)
            if i < len(self.channels) - 1:
                skips.append(h)
                n, hh, ww, c = h.shape  # 2x2 mean pooling
                h = h.reshape(n, hh // 2, 2, ww // 2, 2, c).mean(axis=(2, 4))
        h = _ResBlock(self.channels[-1])(h, emb)
        for ch, skip in zip(reversed(self.channels[:-1]), reversed(skips)):
            n, hh, ww, c = h.shape
            h = jax.image.resize(h, (n, 2 * hh, 2 * ww, c), "nearest")
            h = _ResBlock(ch)(jnp.concatenate([h, skip], axis=-1), emb)
        out_ch = 1 if self.in_channels is None else self.in_channels
        h = nn.silu(nn.GroupNorm(num_groups=min(8, h.shape[-1]))(h))
        out = nn.Conv(out_ch, (3, 3), kernel_init=nn.initializers.zeros)(h)
        out = out.reshape(lead + out.shape[1:])
        return (out[..., 0] if self.in_channels is None else out).astype(x.dtype)

"""A 1-D UNet noise network eps_theta(x, t, cond) for DDPMs on short sequences (windows of a
time series), as in GAS-DRO's carbon experiments (channel widths [128, 256, 256, 256]).

One residual block per level, GroupNorm, the sinusoidal step embedding (plus an optional
conditioning vector) shifting the normalised activations of every block, average pooling by 2 between levels, nearest
upsampling and skip connections by concatenation. A sequence whose length is not a multiple
of 2 ** (levels - 1) is zero-padded at the end inside the network and cropped back.
"""

from __future__ import annotations

from typing import Sequence

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from tailjax.nn.ddpm import _floating, timestep_embedding

__all__ = ["UNet1D"]


class _ResBlock1D(nn.Module):
    channels: int
    kernel_size: int = 3

    @nn.compact
    def __call__(self, h, emb):
        k = (self.kernel_size,)
        r = nn.Conv(self.channels, k)(nn.silu(nn.GroupNorm(num_groups=math.gcd(8, h.shape[-1]))(h)))
        # the step embedding shifts the normalised activations (a shift before GroupNorm would be
        # removed by it wherever a group holds one channel)
        r = nn.GroupNorm(num_groups=math.gcd(8, self.channels))(r) + nn.Dense(self.channels)(emb)[:, None, :]
        r = nn.Conv(self.channels, k)(nn.silu(r))
        skip = h if h.shape[-1] == self.channels else nn.Conv(self.channels, (1,))(h)
        return skip + r


class UNet1D(nn.Module):
    """x: (..., L) with ``in_channels=None`` or (..., L, C); t: (...,); cond: (..., c) or
    None -> an array of the shape of x.

    ``channels`` are the widths of the levels, from the input resolution down (GAS-DRO's
    carbon noise network: (128, 256, 256, 256)); every level but the last halves the length.
    """

    channels: Sequence[int] = (128, 256, 256, 256)
    time_dim: int = 64
    kernel_size: int = 3
    in_channels: int | None = None

    @nn.compact
    def __call__(self, x, t, cond=None):
        if len(self.channels) < 1 or min(self.channels) < 1:
            raise ValueError(f"channels must name at least one level, all >= 1, got {tuple(self.channels)}")
        if self.kernel_size < 1:
            raise ValueError(f"kernel_size must be >= 1, got {self.kernel_size}")
        h = x[..., None] if self.in_channels is None else x
        lead, length = h.shape[:-2], h.shape[-2]
        h = _floating(h.reshape((-1,) + h.shape[-2:]))
        factor = 2 ** (len(self.channels) - 1)
        padded = -(-length // factor) * factor
        h = jnp.pad(h, ((0, 0), (0, padded - length), (0, 0)))
        emb = timestep_embedding(jnp.broadcast_to(t, lead).reshape(-1), self.time_dim, dtype=h.dtype)
        if cond is not None:
            c = jnp.broadcast_to(cond, lead + cond.shape[-1:]).reshape(-1, cond.shape[-1])
            emb = jnp.concatenate([emb, c.astype(h.dtype)], axis=-1)
        emb = nn.Dense(self.time_dim)(nn.silu(nn.Dense(self.time_dim)(emb)))
        h = nn.Conv(self.channels[0], (self.kernel_size,))(h)
        skips = []
        for i, ch in enumerate(self.channels):
            h = _ResBlock1D(ch, self.kernel_size)(h, emb)
            if i < len(self.channels) - 1:
                skips.append(h)
                n, ll, c = h.shape
                h = h.reshape(n, ll // 2, 2, c).mean(axis=2)
        h = _ResBlock1D(self.channels[-1], self.kernel_size)(h, emb)
        for ch, skip in zip(reversed(self.channels[:-1]), reversed(skips)):
            h = jnp.repeat(h, 2, axis=1)
            h = _ResBlock1D(ch, self.kernel_size)(jnp.concatenate([h, skip], axis=-1), emb)
        out_ch = 1 if self.in_channels is None else self.in_channels
        h = nn.silu(nn.GroupNorm(num_groups=math.gcd(8, h.shape[-1]))(h))
        out = nn.Conv(out_ch, (self.kernel_size,), kernel_init=nn.initializers.zeros)(h)[:, :length]
        out = out.reshape(lead + out.shape[1:])
        return (out[..., 0] if self.in_channels is None else out).astype(x.dtype)

"""Corruptions for the robustness experiments: Gaussian noise, Perlin noise and cutout.

Images (the digits experiment): each function acts on one image (H, W) with values in
[0, 1], key first, results clipped to [0, 1]; :func:`corrupt` maps a batch. Series (the
carbon experiment, GAS-DRO's Tables 2-4): :func:`perlin_field_1d` and :func:`corrupt_series`
corrupt the input part of forecasting windows (everything but the last value, the target),
without clipping (scaled series may leave [0, 1]).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from tailjax._checks import (
    check_float_dtype, check_int, check_positive, check_scalar, is_concrete, nan_where, traced_below_zero,
)

__all__ = ["gaussian_noise", "perlin_field", "perlin_noise", "cutout", "corrupt", "perlin_field_1d",
           "corrupt_series"]

KINDS = ("gaussian", "perlin", "cutout")


def _check_image(image, name: str = "image") -> None:
    if jnp.ndim(image) != 2 or jnp.size(image) == 0:
        raise ValueError(f"{name} must be a non-empty (h, w) array, got shape {jnp.shape(image)}")


def _check_level(level):
    """``level`` checked; a concrete one of shape (1,) comes back 0-d."""
    check_scalar(level, "level")
    if not is_concrete(level):
        return level
    if np.ndim(level):
        level = np.reshape(level, ())
    if not 0.0 <= float(level) < math.inf:
        raise ValueError(f"level must be finite and >= 0, got {level}")
    return level


def gaussian_noise(key: PRNGKeyArray, image: Float[Array, "h w"], std: float) -> Array:
    """image + N(0, std^2) per pixel, clipped to [0, 1] (NaN for a traced ``std < 0``); a
    floating-point image."""
    _check_image(image)
    check_float_dtype(jnp.asarray(image).dtype, "image")
    check_scalar(std, "std")
    check_positive(std, "std", allow_zero=True)
    out = jnp.clip(image + std * jax.random.normal(key, image.shape, image.dtype), 0.0, 1.0)
    return nan_where(traced_below_zero(std), out)


def perlin_field(key: PRNGKeyArray, shape: tuple[int, int], res: int = 4) -> Array:
    """2-D Perlin gradient noise on a ``res`` x ``res`` lattice, values within about [-1, 1]."""
    res = check_int(res, "res", minimum=1)
    h, w = shape
    angles = 2.0 * jnp.pi * jax.random.uniform(key, (res + 1, res + 1))
    grads = jnp.stack([jnp.cos(angles), jnp.sin(angles)], -1)
    ys = (jnp.arange(h, dtype=jnp.float32) + 0.5) * res / h
    xs = (jnp.arange(w, dtype=jnp.float32) + 0.5) * res / w
    py, px = jnp.meshgrid(ys, xs, indexing="ij")
    iy, ix = jnp.floor(py).astype(jnp.int32), jnp.floor(px).astype(jnp.int32)
    fy, fx = py - iy.astype(jnp.float32), px - ix.astype(jnp.float32)

    def corner(dy, dx):
        g = grads[iy + dy, ix + dx]
        return g[..., 0] * (fy - dy) + g[..., 1] * (fx - dx)

    fade = lambda t: t * t * t * (t * (t * 6.0 - 15.0) + 10.0)
    uy, ux = fade(fy), fade(fx)
    top = corner(0, 0) * (1 - ux) + corner(0, 1) * ux
    bottom = corner(1, 0) * (1 - ux) + corner(1, 1) * ux
    return jnp.sqrt(2.0) * (top * (1 - uy) + bottom * uy)


def perlin_noise(key: PRNGKeyArray, image: Float[Array, "h w"], strength: float, res: int = 4) -> Array:
    """image + strength * Perlin field, clipped to [0, 1] (NaN for a traced ``strength < 0``);
    a floating-point image (an integer one would truncate the field)."""
    _check_image(image)
    check_float_dtype(jnp.asarray(image).dtype, "image")
    check_scalar(strength, "strength")
    check_positive(strength, "strength", allow_zero=True)
    field = perlin_field(key, image.shape, res).astype(image.dtype)
    return nan_where(traced_below_zero(strength), jnp.clip(image + strength * field, 0.0, 1.0))


def cutout(key: PRNGKeyArray, image: Float[Array, "h w"], size: int) -> Array:
    """Zero a ``size`` x ``size`` square centred at a uniform pixel (it may leave the image)."""
    _check_image(image)
    size = check_int(size, "size", minimum=0)
    h, w = image.shape
    ky, kx = jax.random.split(key)
    cy = jax.random.randint(ky, (), 0, h)
    cx = jax.random.randint(kx, (), 0, w)
    rows = jnp.arange(h)[:, None]
    cols = jnp.arange(w)[None, :]
    lo_y, lo_x = cy - size // 2, cx - size // 2
    inside = (rows >= lo_y) & (rows < lo_y + size) & (cols >= lo_x) & (cols < lo_x + size)
    return jnp.where(inside, jnp.zeros_like(image), image)


def corrupt(key: PRNGKeyArray, images: Float[Array, "n h w"], kind: str, level: float) -> Array:
    """Corrupt a batch: ``kind`` in {"gaussian", "perlin", "cutout"}; ``level`` is the noise
    std, the Perlin strength, or the cutout side in pixels (a traced negative level gives NaN;
    the cutout side must be concrete)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be 'gaussian', 'perlin' or 'cutout', got {kind!r}")
    if jnp.ndim(images) != 3 or jnp.size(images) == 0:
        raise ValueError(f"images must have shape (n, h, w) and not be empty, got {jnp.shape(images)}")
    if kind != "cutout":
        check_float_dtype(jnp.asarray(images).dtype, "images")
    level = _check_level(level)
    if kind == "cutout" and not is_concrete(level):
        raise ValueError("level (the cutout side) must be concrete, not traced")
    keys = jax.random.split(key, images.shape[0])
    if kind == "gaussian":
        return jax.vmap(lambda k, x: gaussian_noise(k, x, level))(keys, images)
    if kind == "perlin":
        return jax.vmap(lambda k, x: perlin_noise(k, x, level))(keys, images)
    if kind == "cutout":
        return jax.vmap(lambda k, x: cutout(k, x, int(level)))(keys, images)
    raise ValueError(f"kind must be 'gaussian', 'perlin' or 'cutout', got {kind!r}")


def perlin_field_1d(key: PRNGKeyArray, length: int, res: int = 4) -> Array:
    """1-D Perlin gradient noise of ``length`` points on ``res`` lattice cells, values within
    about [-1, 1] (0 at the lattice points, smooth between)."""
    res = check_int(res, "res", minimum=1)
    length = check_int(length, "length", minimum=1)
    slopes = jax.random.uniform(key, (res + 1,), minval=-1.0, maxval=1.0)
    pos = (jnp.arange(length, dtype=jnp.float32) + 0.5) * res / length
    i = jnp.floor(pos).astype(jnp.int32)
    f = pos - i.astype(jnp.float32)
    fade = f * f * f * (f * (f * 6.0 - 15.0) + 10.0)
    left, right = slopes[i] * f, slopes[i + 1] * (f - 1.0)
    return 2.0 * (left * (1.0 - fade) + right * fade)


def corrupt_series(
    key: PRNGKeyArray, windows: Float[Array, "n l"], kind: str, level: float, res: int = 4
) -> Array:
    """Corrupt the inputs ``windows[:, :-1]`` of forecasting windows (the target, the last
    value, is kept): ``"gaussian"`` adds N(0, level^2) per value, ``"perlin"`` adds ``level``
    times a 1-D Perlin field of ``res`` cells, ``"cutout"`` sets ``int(level)`` consecutive
    values at a uniform position to 0 (the scaled series' floor). Returns (n, l); NaN for a
    traced negative ``level`` (the cutout length must be concrete)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be 'gaussian', 'perlin' or 'cutout', got {kind!r}")
    if jnp.ndim(windows) != 2 or windows.shape[1] < 2:
        raise ValueError(f"windows must have shape (n, l) with l >= 2, got {jnp.shape(windows)}")
    if kind != "cutout":
        check_float_dtype(jnp.asarray(windows).dtype, "windows")
    level = _check_level(level)
    if kind == "cutout" and not is_concrete(level):
        raise ValueError("level (the cutout length) must be concrete, not traced")
    x, y = windows[:, :-1], windows[:, -1:]
    n, length = x.shape
    keys = jax.random.split(key, n)
    if kind == "gaussian":
        noisy = x + level * jax.random.normal(key, x.shape, x.dtype)
    elif kind == "perlin":
        noisy = x + level * jax.vmap(lambda k: perlin_field_1d(k, length, res))(keys).astype(x.dtype)
    else:
        size = int(level)
        start = jax.vmap(lambda k: jax.random.randint(k, (), 0, length))(keys)
        idx = jnp.arange(length)[None, :]
        inside = (idx >= start[:, None] - size // 2) & (idx < start[:, None] - size // 2 + size)
        noisy = jnp.where(inside, jnp.zeros_like(x), x)
    return nan_where(traced_below_zero(level), jnp.concatenate([noisy, y], axis=1))

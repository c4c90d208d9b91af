"""KL-DRO (Hu & Hong, 2013): sup_{KL(Q || P) <= rho} E_Q f through its one-dimensional dual

    sup_{KL(Q||P) <= rho} E_Q f = min_{lam > 0} lam log E_P exp(f / lam) + lam rho.

The minimiser is found where KL(Q_lam || P) = rho for the tilted Q_lam ~ P exp(f / lam)
(KL decreases in lam); when rho >= -log P(argmax f) the infimum is max f (lam -> 0).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

import numpy as np

from tailjax._checks import (
    check_int, check_nonempty_last_axis, check_positive, is_concrete, nan_where, traced_below_zero,
)
from tailjax.dro.erm import per_sample_losses

__all__ = ["kl_dual", "kl_tilted_divergence", "kl_worst_case", "kl_dro_params", "kl_dro_loss"]


def _check_probs(probs, losses):
    """``probs`` must have the shape of ``losses``; concrete ones finite, >= 0, not all zero."""
    if probs is None:
        return
    if jnp.shape(probs) != jnp.shape(losses):
        raise ValueError(f"probs must have the shape of losses {jnp.shape(losses)}, got {jnp.shape(probs)}")
    if is_concrete(probs):
        p = np.asarray(probs)
        if not np.all(np.isfinite(p)) or np.any(p < 0):
            raise ValueError("probs must be finite and >= 0")
        if np.any(np.sum(p, axis=-1) <= 0):
            raise ValueError("probs must not be all zero")


def _nan_unless(ok, value):
    """``value`` where the (possibly traced) condition holds, NaN elsewhere: a traced level
    outside its range gives NaN, never a finite wrong number."""
    return jnp.where(ok, value, jnp.full_like(value, jnp.nan))


def _log_probs(losses, probs):
    if probs is None:
        n = losses.shape[-1]
        return jnp.full(losses.shape, -jnp.log(jnp.asarray(n, losses.dtype)))
    return jnp.log(probs / jnp.sum(probs, axis=-1, keepdims=True))


def kl_dual(
    losses: Float[Array, " n"], lam: Array, radius: float, probs: Float[Array, " n"] | None = None
) -> Float[Array, ""]:
    """lam log sum_i p_i exp(f_i / lam) + lam rho (p uniform unless ``probs`` is given).

    Traced ``lam <= 0`` or ``radius < 0`` give NaN (concrete ones raise ``ValueError``).
    """
    check_nonempty_last_axis(losses, "losses")
    check_positive(lam, "lam")
    check_positive(radius, "radius", allow_zero=True)
    _check_probs(probs, losses)
    logp = _log_probs(losses, probs)
    value = lam * jax.nn.logsumexp(losses / lam + logp, axis=-1) + lam * radius
    return _nan_unless((lam > 0) & (radius >= 0), value)


def kl_tilted_divergence(losses: Array, lam: Array, probs: Array | None = None) -> Array:
    """KL(Q_lam || P) of the exponentially tilted Q_lam ~ P exp(f / lam) (NaN for a traced
    ``lam <= 0``)."""
    check_nonempty_last_axis(losses, "losses")
    check_positive(lam, "lam")
    _check_probs(probs, losses)
    logp = _log_probs(losses, probs)
    logq = jax.nn.log_softmax(losses / lam + logp, axis=-1)
    return _nan_unless(lam > 0, jnp.sum(jnp.exp(logq) * (logq - logp), axis=-1))


def kl_worst_case(
    losses: Float[Array, " n"],
    radius: float,
    probs: Float[Array, " n"] | None = None,
    iters: int = 200,
) -> tuple[Array, Array]:
    """(value, lam*) of sup_{KL(Q||P) <= radius} E_Q f by bisection on log lam.

    lam* = 0 means the sup is max f (the radius allows all mass on the maximisers). A
    traced ``radius <= 0`` gives NaN.
    """
    check_nonempty_last_axis(losses, "losses")
    if jnp.ndim(losses) != 1:
        raise ValueError(f"losses must be 1-D (n,), got shape {jnp.shape(losses)}")
    if is_concrete(losses) and not bool(np.isfinite(np.asarray(losses)).all()):
        raise ValueError("losses must be finite (found NaN or inf)")
    check_positive(radius, "radius")
    _check_probs(probs, losses)
    iters = check_int(iters, "iters", minimum=1)
    scale = jnp.maximum(jnp.max(losses) - jnp.min(losses), 1e-12)
    lo, hi = jnp.log(scale * 1e-6), jnp.log(scale * 1e6)

    def body(_, bounds):
        a, b = bounds
        m = 0.5 * (a + b)
        too_tight = kl_tilted_divergence(losses, jnp.exp(m), probs) > radius  # lam too small
        return jnp.where(too_tight, m, a), jnp.where(too_tight, b, m)

    a, b = jax.lax.fori_loop(0, iters, body, (lo, hi))
    lam = jnp.exp(0.5 * (a + b))
    logp = _log_probs(losses, probs)
    support = jnp.sum(jnp.where(losses == jnp.max(losses), jnp.exp(logp), 0.0))
    saturated = radius >= -jnp.log(support)
    value = jnp.where(saturated, jnp.max(losses), kl_dual(losses, lam, radius, probs))
    return _nan_unless(radius > 0, value), _nan_unless(radius > 0, jnp.where(saturated, 0.0, lam))


def kl_dro_params(params: Any, lam: float = 1.0) -> tuple[Any, Array]:
    """Joint parameters (w, log lam) of :func:`kl_dro_loss` from the predictor's ``params``
    (all NaN for a traced ``lam <= 0``)."""
    check_positive(lam, "lam")
    out = params, jnp.log(jnp.asarray(lam, jnp.float32))
    return nan_where(traced_below_zero(lam, allow_zero=False), out)


def kl_dro_loss(
    params: tuple[Any, Array],
    batch: Any,
    key: jax.Array,
    *,
    loss_fn: Callable[[Any, Any], jax.Array],
    radius: float = 0.1,
) -> tuple[Array, dict]:
    """The KL dual lam log mean_i exp(f(w, x_i) / lam) + lam rho, minimised jointly over
    ``params = (w, log lam)`` (:func:`kl_dro_params`): ``(value, {"lam": lam})``.

    ``radius`` is the paper's rho (a traced negative one gives NaN); the trained predictor is
    ``params[0]``.
    """
    del key
    check_positive(radius, "radius", allow_zero=True)
    w, log_lam = params
    losses = per_sample_losses(loss_fn, w, batch)
    lam = jnp.exp(log_lam).astype(losses.dtype)
    value = lam * jax.nn.logsumexp(losses / lam - math.log(losses.shape[0])) + lam * radius
    return _nan_unless(jnp.asarray(radius) >= 0, value), {"lam": lam}

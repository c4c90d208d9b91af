"""Interpolant schedules X_t = beta_t X_0 + alpha_t X_1 and their memoryless-SDE quantities.

Convention (Adjoint Matching, Domingo-Enrich et al. 2024): X_0 ~ N(0, I) at t = 0, data X_1
at t = 1, so alpha_0 = 0, beta_0 = 1, alpha_1 = 1, beta_1 = 0. The velocity field of the
interpolant is v(x, t) = E[alpha_dot_t X_1 + beta_dot_t X_0 | X_t = x] and satisfies
v = kappa_t x + eta_t grad log p_t with

    kappa_t = alpha_dot_t / alpha_t,   eta_t = beta_t (kappa_t beta_t - beta_dot_t).

The memoryless SDE dX = (2 v(X, t) - kappa_t X) dt + sigma(t) dB with sigma(t) = sqrt(2 eta_t)
has the marginals of the interpolant and makes X_0 and X_1 independent. For rectified flow
(alpha = t, beta = 1 - t) kappa = 1/t and eta = (1 - t)/t: both blow up at t = 0, which is why
the samplers in :mod:`tailjax.flows.sde` never evaluate them there.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import is_concrete

__all__ = [
    "Schedule",
    "rectified_flow",
    "cosine_schedule",
    "kappa",
    "eta",
    "memoryless_sigma",
    "data_prediction",
]

_Fn = Callable[[Array], Array]


@dataclasses.dataclass(frozen=True, eq=False)
class Schedule:
    """alpha_t, beta_t and their time derivatives, as functions of a float array ``t``."""

    alpha: _Fn
    beta: _Fn
    alpha_dot: _Fn
    beta_dot: _Fn
    name: str = "custom"

    def interpolate(
        self, x0: Float[ArrayLike, "*batch *event"], x1: Float[ArrayLike, "*batch *event"],
        t: Float[ArrayLike, "*batch"],
    ) -> tuple[Float[Array, "*batch *event"], Float[Array, "*batch *event"]]:
        """(X_t, d/dt X_t) = (beta_t x0 + alpha_t x1, beta_dot_t x0 + alpha_dot_t x1).

        ``t`` has the batch shape of ``x0`` (its leading axes); the event axes after it take
        any shape (a vector ``(d,)`` or an image ``(H, W, C)``). A scalar ``t`` broadcasts.
        """
        x0, x1 = jnp.asarray(x0), jnp.asarray(x1)
        t = _expand(jnp.asarray(t, x0.dtype), x0)
        xt = self.beta(t) * x0 + self.alpha(t) * x1
        vt = self.beta_dot(t) * x0 + self.alpha_dot(t) * x1
        return xt, vt


def rectified_flow() -> Schedule:
    """alpha_t = t, beta_t = 1 - t (the default)."""
    return Schedule(
        alpha=lambda t: t,
        beta=lambda t: 1.0 - t,
        alpha_dot=lambda t: jnp.ones_like(t),
        beta_dot=lambda t: -jnp.ones_like(t),
        name="rectified_flow",
    )


def cosine_schedule() -> Schedule:
    """alpha_t = sin(pi t / 2), beta_t = cos(pi t / 2) (variance preserving)."""
    half_pi = jnp.pi / 2
    return Schedule(
        alpha=lambda t: jnp.sin(half_pi * t),
        beta=lambda t: jnp.cos(half_pi * t),
        alpha_dot=lambda t: half_pi * jnp.cos(half_pi * t),
        beta_dot=lambda t: -half_pi * jnp.sin(half_pi * t),
        name="cosine",
    )


def _expand(t, x):
    """``t`` with trailing unit axes, to broadcast against the event axes of ``x``; a scalar
    ``t`` gets one (it then broadcasts against any event)."""
    return t.reshape(t.shape + (1,) * max(jnp.ndim(x) - t.ndim, 1 if t.ndim == 0 else 0))


def _float(t):
    t = jnp.asarray(t)
    return t if jnp.issubdtype(t.dtype, jnp.floating) else t.astype(jnp.result_type(float))


def check_time(t, name: str = "t") -> None:
    """Raise ``ValueError`` naming ``name`` unless every concrete time lies in [0, 1]."""
    if is_concrete(t):
        a = np.asarray(t, dtype=float)
        if not np.all((a >= 0.0) & (a <= 1.0)):
            raise ValueError(f"{name} must lie in [0, 1], got {a if a.size < 6 else a.shape}")


def nan_outside_time(t, out):
    """``out`` with NaN where a traced ``t`` (broadcast against it) lies outside [0, 1]."""
    if is_concrete(t):
        return out
    return jnp.where((t >= 0.0) & (t <= 1.0), out, jnp.nan)


def kappa(schedule: Schedule, t: Float[ArrayLike, "..."]) -> Float[Array, "..."]:
    """kappa_t = alpha_dot_t / alpha_t (infinite at t = 0); ``t`` outside [0, 1] raises (NaN
    when traced)."""
    check_time(t)
    t = _float(t)
    return nan_outside_time(t, schedule.alpha_dot(t) / schedule.alpha(t))


def eta(schedule: Schedule, t: Float[ArrayLike, "..."]) -> Float[Array, "..."]:
    """eta_t = beta_t (kappa_t beta_t - beta_dot_t) (infinite at t = 0, zero at t = 1); ``t``
    outside [0, 1] raises (NaN when traced)."""
    check_time(t)
    t = _float(t)
    b = schedule.beta(t)
    return b * (kappa(schedule, t) * b - schedule.beta_dot(t))


def memoryless_sigma(schedule: Schedule, t: Float[ArrayLike, "..."]) -> Float[Array, "..."]:
    """sigma(t) = sqrt(2 eta_t), the memoryless noise level."""
    return jnp.sqrt(2.0 * eta(schedule, t))


def data_prediction(
    schedule: Schedule, x: Float[ArrayLike, "*batch *event"], v: Float[ArrayLike, "*batch *event"],
    t: Float[ArrayLike, "*batch"],
) -> Float[Array, "*batch *event"]:
    """E[X_1 | X_t = x] from the velocity: (beta v - beta_dot x) / (alpha_dot beta - alpha beta_dot).

    Finite at t = 0 (where it reads (v - beta_dot_0 x) / alpha_dot_0) and equal to x at t = 1;
    ``t`` outside [0, 1] raises (NaN when traced).
    """
    check_time(t)
    x, v = jnp.asarray(x), jnp.asarray(v)
    t = _expand(jnp.asarray(t, x.dtype), x)
    a, b = schedule.alpha(t), schedule.beta(t)
    ad, bd = schedule.alpha_dot(t), schedule.beta_dot(t)
    return nan_outside_time(t, (b * v - bd * x) / (ad * b - a * bd))

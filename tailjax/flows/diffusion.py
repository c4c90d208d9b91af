"""Velocity fields from diffusion models: a VP / DDPM noise-prediction network eps(x, t) as the
flow velocity that the samplers and fine-tuners of :mod:`tailjax.flows` need.

Convention of :mod:`tailjax.flows.schedule`: X_t = beta_t X_0 + alpha_t X_1 with noise X_0 at
t = 0 and data X_1 at t = 1. A noise-prediction model estimates eps(x, t) = E[X_0 | X_t = x].
Since E[X_1 | X_t = x] = (x - beta_t eps) / alpha_t, the velocity
v = alpha_dot_t E[X_1 | x] + beta_dot_t E[X_0 | x] is

    v(x, t) = kappa_t x + (beta_dot_t - kappa_t beta_t) eps(x, t),   kappa_t = alpha_dot_t / alpha_t.

For a variance-preserving schedule (alpha^2 + beta^2 = 1, e.g. :func:`~tailjax.flows.cosine_schedule`)
beta_dot - kappa beta = -alpha_dot / (alpha beta). A DDPM (Ho et al., :mod:`tailjax.nn.ddpm`) with
x_s = sqrt(abar_s) x_data + sqrt(1 - abar_s) eps at steps s = 1..T is the VP schedule
alpha_t = sqrt(abar(s)), beta_t = sqrt(1 - abar(s)) at the continuous step s = (1 - t) T, with
log abar interpolated linearly between steps and abar(0) = 1 (:func:`vp_schedule_from_ddpm`);
its network is called at that real-valued step. Its alpha at t = 0 is sqrt(abar_T), small but
not zero (0.0064 for Ho et al.'s 1000 linear steps): starting the samplers from N(0, I) treats
step T as pure noise, as DDPM sampling does.

kappa is infinite at t = 0 and beta_dot (for a DDPM) at t = 1, so the adapters evaluate the
network at t clipped to [t_min, 1 - t_min] (default 1e-3).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from tailjax._checks import is_concrete
from tailjax.flows.schedule import Schedule

__all__ = ["velocity_from_noise_prediction", "vp_schedule_from_ddpm", "ddpm_velocity"]


def velocity_from_noise_prediction(
    eps_fn: Callable[..., Array], schedule: Schedule, *, t_min: float = 1e-3
) -> Callable[..., Array]:
    """``velocity_fn(params, x, t[, c])`` of a noise-prediction model ``eps_fn(params, x, t[, c])``.

    ``eps_fn`` predicts E[X_0 | X_t = x] in the time and schedule of ``schedule``;
    v = kappa_t x + (beta_dot_t - kappa_t beta_t) eps (module docstring). ``t`` is clipped to
    [t_min, 1 - t_min] (both in the schedule and in the call of ``eps_fn``).
    """
    if not 0.0 < t_min < 0.5:
        raise ValueError(f"t_min must lie in (0, 0.5), got {t_min}")

    def velocity_fn(params: Any, x: Array, t: Array, *context: Any) -> Array:
        x = jnp.asarray(x)
        t = jnp.clip(jnp.asarray(t, x.dtype), t_min, 1.0 - t_min)
        kap = schedule.alpha_dot(t) / schedule.alpha(t)
        coef = schedule.beta_dot(t) - kap * schedule.beta(t)
        eps = eps_fn(params, x, t, *context)
        return (kap * x + coef * eps).astype(x.dtype)

    return velocity_fn


def vp_schedule_from_ddpm(alpha_bars: Array) -> Schedule:
    """The VP schedule of a DDPM with cumulative products ``alpha_bars: (T,)`` (steps 1..T).

    alpha_t = sqrt(abar(s)) and beta_t = sqrt(1 - abar(s)) at s = (1 - t) T, log abar linear
    between integer steps (abar(0) = 1); derivatives by ``jax.grad`` of the interpolation.
    Concrete ``alpha_bars`` outside (0, 1] (or NaN) raise ``ValueError``.
    """
    alpha_bars = jnp.asarray(alpha_bars)
    if alpha_bars.ndim != 1 or alpha_bars.shape[0] < 2:
        raise ValueError(f"alpha_bars must be a 1-D array of at least 2 steps, got shape {alpha_bars.shape}")
    if is_concrete(alpha_bars):
        ab = np.asarray(alpha_bars)
        if not np.all((ab > 0.0) & (ab <= 1.0)):
            raise ValueError("alpha_bars must lie in (0, 1] (found a value outside, or NaN)")
    num = alpha_bars.shape[0]
    log_ab = jnp.concatenate([jnp.zeros((1,), alpha_bars.dtype), jnp.log(alpha_bars)])

    def log_abar(t):
        t = jnp.asarray(t)
        s = (1.0 - t) * num
        return jnp.interp(s, jnp.arange(num + 1, dtype=t.dtype), log_ab.astype(t.dtype))

    alpha = lambda t: jnp.exp(0.5 * log_abar(t))
    beta = lambda t: jnp.sqrt(jnp.maximum(-jnp.expm1(log_abar(t)), 0.0))
    grad = lambda f: jnp.vectorize(jax.grad(lambda t: f(t)))
    return Schedule(alpha=alpha, beta=beta, alpha_dot=grad(alpha), beta_dot=grad(beta), name=f"ddpm_vp_{num}")


def ddpm_velocity(
    eps_apply: Callable[..., Array], alpha_bars: Array, *, t_min: float = 1e-3
) -> tuple[Callable[..., Array], Schedule]:
    """``(velocity_fn, schedule)`` of a DDPM noise network ``eps_apply(params, x, s[, cond])``
    trained on steps s = 1..T (:mod:`tailjax.nn.ddpm`): the network is called at the real step
    s = (1 - t) T. Use the returned schedule in the samplers and fine-tuners (``schedule=``)."""
    schedule = vp_schedule_from_ddpm(alpha_bars)
    num = jnp.shape(alpha_bars)[0]
    eps_fn = lambda params, x, t, *c: eps_apply(params, x, (1.0 - t) * num, *c)
    return velocity_from_noise_prediction(eps_fn, schedule, t_min=t_min), schedule

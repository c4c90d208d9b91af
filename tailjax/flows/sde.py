"""The memoryless SDE dX = (2 v(X, t) - kappa_t X) dt + sigma(t) dB, sampled under ``lax.scan``.

Time grid ``ts: (K + 1,)`` with ts[0] = 0 < ts[1] < ... < ts[K] = 1. kappa and sigma are
infinite at t = 0, so the grid is walked in a way that never evaluates them there:

* Step 0 (from t = 0 to t_1) is the memoryless transition itself. Under the memoryless SDE
  X_{t_1} given X_1 = x1 is alpha_{t_1} x1 + beta_{t_1} xi with fresh noise xi, independent of
  X_0; the step replaces x1 by the model's data prediction E[X_1 | X_0] (from v(X_0, 0)).
* Steps 1..K-1 are Euler-Maruyama with coefficients at the left end t_k > 0.
* The last step (to t = 1) adds no noise: it returns the model's deterministic update.

``velocity_fn(params, x, t) -> v`` is a per-sample field on one event ``x`` (shape ``(d,)``, or any
event shape such as an image ``(H, W, C)``); the samplers vmap it. With a per-sample
``context`` it is called as ``velocity_fn(params, x, t, c)`` (:mod:`tailjax.flows._fields`).
``remat=True`` rematerialises each step under ``jax.checkpoint`` (for a sampler that is
differentiated; the fine-tuners hold their paths fixed and do not need it).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import check_int, is_concrete, nan_where
from tailjax.flows._fields import call_field, check_contexts, event_shape
from tailjax.flows.ode import uniform_time_grid
from tailjax.flows.schedule import Schedule, data_prediction, rectified_flow

__all__ = ["MemorylessCoefficients", "memoryless_coefficients", "memoryless_solve", "memoryless_sample"]

VelocityFn = Callable[[Any, Array, Array], Array]


class MemorylessCoefficients(NamedTuple):
    """Per-interval quantities of a memoryless grid (index k is the interval [t_k, t_{k+1}])."""

    ts: Array  # (K + 1,) the grid
    h: Array  # (K,) step sizes
    kappa: Array  # (K + 1,) kappa(t_k); entry 0 (t = 0, infinite) is 0 and never used
    sigma: Array  # (K + 1,) sigma(t_k); inf at t = 0 and 0 at t = 1 stand for the limits
    noise_scale: Array  # (K,) noise std of each step (0 on the last step)
    alpha: Array  # (K + 1,) alpha(t_k)
    beta: Array  # (K + 1,)


def _check_grid(ts):
    if ts.ndim != 1 or ts.shape[0] < 3:
        raise ValueError(f"ts must be a 1-D grid of at least 3 times, got shape {ts.shape}")
    if is_concrete(ts):
        t = np.asarray(ts)
        if t[0] != 0.0 or t[-1] != 1.0 or not np.all(np.diff(t) > 0):
            raise ValueError("ts must increase strictly from 0 to 1")


def _bad_grid(ts):
    """Flag of a traced grid that does not increase strictly from 0 to 1."""
    if is_concrete(ts):
        return False
    return (ts[0] != 0.0) | (ts[-1] != 1.0) | ~jnp.all(jnp.diff(ts) > 0)


def memoryless_coefficients(
    schedule: Schedule | None = None,
    num_steps: int = 40,
    ts: Float[ArrayLike, " k1"] | None = None,
    dtype: Any = None,
) -> MemorylessCoefficients:
    """Coefficients of the memoryless sampler on ``ts`` (uniform with ``num_steps`` by default).

    A ``ts`` that does not increase strictly from 0 to 1 raises (all NaN when traced)."""
    schedule = schedule or rectified_flow()
    dtype = dtype or jnp.result_type(float)
    if ts is None:
        num_steps = check_int(num_steps, "num_steps", minimum=2)
    ts = uniform_time_grid(num_steps, dtype) if ts is None else jnp.asarray(ts, dtype)
    _check_grid(ts)
    # Interior times only: t = 0 and t = 1 are replaced by the neighbouring point before any
    # division, then their entries are overwritten by the limits.
    safe = ts.at[0].set(ts[1])
    a, b = schedule.alpha(safe), schedule.beta(safe)
    ad, bd = schedule.alpha_dot(safe), schedule.beta_dot(safe)
    kap = (ad / a).at[0].set(0.0)
    sigma = jnp.sqrt(jnp.maximum(2.0 * b * (kap * b - bd), 0.0))
    sigma = sigma.at[0].set(jnp.inf).at[-1].set(0.0)
    h = jnp.diff(ts)
    noise = (sigma[:-1] * jnp.sqrt(h)).at[0].set(0.0).at[-1].set(0.0)
    coefs = MemorylessCoefficients(ts, h, kap, sigma, noise, schedule.alpha(ts), schedule.beta(ts))
    return nan_where(_bad_grid(ts), coefs)


def _path(velocity_fn, params, x0, noise, c, coefs, schedule, return_trajectory, remat=False):
    """One sample: x0 (*event), noise (K, *event) standard normals, context c (or None)."""
    t0 = coefs.ts[0]
    v0 = call_field(velocity_fn, params, x0, t0, c)
    x1_hat = data_prediction(schedule, x0, v0, t0)
    x = coefs.alpha[1] * x1_hat + coefs.beta[1] * noise[0]

    def body(x, k):
        t, h = coefs.ts[k], coefs.h[k]
        drift = 2.0 * call_field(velocity_fn, params, x, t, c) - coefs.kappa[k] * x
        x = x + h * drift + coefs.noise_scale[k] * noise[k]
        return x, (x if return_trajectory else None)

    steps = jnp.arange(1, coefs.h.shape[0])
    x_end, traj = jax.lax.scan(jax.checkpoint(body) if remat else body, x, steps)
    if return_trajectory:
        return x_end, jnp.concatenate([x0[None], x[None], traj], axis=0)
    return x_end


def memoryless_solve(
    velocity_fn: VelocityFn,
    params: Any,
    x0: Float[ArrayLike, "n *event"],
    noise: Float[ArrayLike, "n k *event"],
    *,
    context: Any = None,
    schedule: Schedule | None = None,
    coefficients: MemorylessCoefficients | None = None,
    num_steps: int | None = None,
    return_trajectory: bool = False,
    remat: bool = False,
):
    """Run the memoryless sampler from ``x0: (n, *event)`` with standard-normal ``noise: (n, K, *event)``.

    ``context``: optional per-sample context ``(n, ...)`` (then ``velocity_fn(params, x, t, c)``).
    Returns ``x1: (n, *event)``, and with ``return_trajectory`` also the path ``(n, K + 1, *event)``.
    """
    x0, noise = jnp.asarray(x0), jnp.asarray(noise)
    if x0.ndim < 2 or 0 in x0.shape:
        raise ValueError(f"x0 must have shape (n, *event), e.g. (n, d), not empty, got {x0.shape}")
    if noise.ndim != x0.ndim + 1:
        raise ValueError(f"noise must have shape (n, K, *event) for x0 of shape {x0.shape}, got {noise.shape}")
    check_contexts(context, x0.shape[0])
    schedule = schedule or rectified_flow()
    if coefficients is None:
        coefficients = memoryless_coefficients(schedule, num_steps or noise.shape[1], dtype=x0.dtype)
    k = coefficients.h.shape[0]
    want = (x0.shape[0], k) + x0.shape[1:]
    if noise.shape != want:
        raise ValueError(f"noise must have shape {want}, got {noise.shape}")
    return jax.vmap(
        lambda x, z, c: _path(velocity_fn, params, x, z, c, coefficients, schedule, return_trajectory, remat)
    )(x0, noise, context)


def memoryless_sample(
    key: Array,
    velocity_fn: VelocityFn,
    params: Any,
    num_samples: int,
    dim: int | tuple[int, ...],
    *,
    context: Any = None,
    schedule: Schedule | None = None,
    num_steps: int = 40,
    ts: Float[ArrayLike, " k1"] | None = None,
    return_trajectory: bool = False,
    dtype: Any = None,
):
    """Sample ``(num_samples, *event)`` by the memoryless SDE from X_0 ~ N(0, I).

    Args:
      key: PRNG key.
      velocity_fn: per-sample ``velocity_fn(params, x, t)`` (``(params, x, t, c)`` with a context).
      params: parameters of the field.
      num_samples: n.
      dim: the data dimension d, or an event shape such as ``(H, W, C)``.
      context: optional per-sample context, a pytree of arrays with leading axis n.
      schedule: interpolant schedule (rectified flow by default).
      num_steps: K, when ``ts`` is not given (uniform grid).
      ts: optional grid from 0 to 1.
      return_trajectory: also return the path ``(num_samples, K + 1, *event)``.
    """
    shape = event_shape(dim)
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    dtype = dtype or jnp.result_type(float)
    schedule = schedule or rectified_flow()
    coefs = memoryless_coefficients(schedule, num_steps, ts, dtype)
    k0, k1 = jax.random.split(key)
    x0 = jax.random.normal(k0, (num_samples,) + shape, dtype)
    noise = jax.random.normal(k1, (num_samples, coefs.h.shape[0]) + shape, dtype)
    return memoryless_solve(
        velocity_fn, params, x0, noise, context=context, schedule=schedule, coefficients=coefs,
        return_trajectory=return_trajectory,
    )

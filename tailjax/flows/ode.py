"""Probability-flow ODE samplers (Euler, Heun) under ``lax.scan``, with log-densities.

``velocity_fn(params, x, t) -> v`` is a per-sample field on one event ``x`` (``(d,)`` or any
event shape, e.g. ``(H, W, C)``); the samplers vmap it. With a per-sample ``context`` it is
called as ``velocity_fn(params, x, t, c)``.
The ODE dX/dt = v(X, t) runs from X_0 ~ N(0, I) at t = 0 to t = 1 on a time grid
``ts: (K + 1,)`` with ts[0] = 0 and ts[-1] = 1.

Log-densities follow the change of variables along the path,
log p_1(X_1) = log N(X_0; 0, I) - sum_k log|det dX_{k+1}/dX_k|, with two choices:
``logdet="exact"`` takes the log-determinant of each discrete step's Jacobian (the exact
density of the discrete map, ``(d, d)`` Jacobians: fine for small d) and ``logdet="trace"``
integrates the instantaneous rule d log p/dt = -div v with the step's own quadrature
(Euler: h tr J(x_k); Heun: h/2 (tr J(x_k) + tr J(x_pred))). Both form the full Jacobian of
the flattened event, d = prod(event shape) columns: fine for small d.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import check_float_dtype, check_int, is_concrete, nan_where
from tailjax.flows._fields import call_field, check_contexts, event_shape
from tailjax.flows.schedule import _float

__all__ = ["uniform_time_grid", "ode_solve", "ode_sample", "ode_sample_and_log_prob", "ode_log_prob"]

VelocityFn = Callable[[Any, Array, Array], Array]
_METHODS = ("euler", "heun")


def uniform_time_grid(num_steps: int, dtype: Any = None) -> Float[Array, " k1"]:
    """``num_steps + 1`` equally spaced times from 0 to 1 (``dtype``: a floating dtype)."""
    num_steps = check_int(num_steps, "num_steps", minimum=1)
    check_float_dtype(dtype)
    return jnp.linspace(0.0, 1.0, num_steps + 1, dtype=dtype or jnp.result_type(float))


def _grid(ts, num_steps, dtype):
    if ts is None:
        return uniform_time_grid(num_steps, dtype)
    ts = jnp.asarray(ts, dtype)
    if ts.ndim != 1 or ts.shape[0] < 2:
        raise ValueError(f"ts must be a 1-D grid of at least 2 times, got shape {ts.shape}")
    if is_concrete(ts):
        dt = np.diff(np.asarray(ts))
        if not (np.all(dt > 0) or np.all(dt < 0)):
            raise ValueError("ts must be strictly monotone (increasing, or decreasing backwards), without NaN")
    return ts


def _bad_grid(ts):
    """Flag of a traced grid that is not strictly monotone (``False`` for a checked one)."""
    if is_concrete(ts):
        return False
    dt = jnp.diff(ts)
    return ~(jnp.all(dt > 0) | jnp.all(dt < 0))


def _check(x0, method, context=None, name="x0"):
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if jnp.ndim(x0) < 2 or 0 in jnp.shape(x0):
        raise ValueError(f"{name} must have shape (n, *event), e.g. (n, d), not empty, got {jnp.shape(x0)}")
    check_contexts(context, jnp.shape(x0)[0])


def _step(velocity_fn, params, method, c=None):
    def step(x, t, h):
        v = call_field(velocity_fn, params, x, t, c)
        if method == "euler":
            return x + h * v
        pred = x + h * v
        return x + 0.5 * h * (v + call_field(velocity_fn, params, pred, t + h, c))

    return step


def _path(velocity_fn, params, x0, ts, method, return_trajectory, c=None):
    step = _step(velocity_fn, params, method, c)

    def body(x, th):
        x = step(x, th[0], th[1])
        return x, (x if return_trajectory else None)

    xs = jnp.stack([ts[:-1], jnp.diff(ts)], axis=-1)
    x1, traj = jax.lax.scan(body, x0, xs)
    if return_trajectory:
        return x1, jnp.concatenate([x0[None], traj], axis=0)
    return x1


def ode_solve(
    velocity_fn: VelocityFn,
    params: Any,
    x0: Float[ArrayLike, "n *event"],
    *,
    context: Any = None,
    num_steps: int = 100,
    method: str = "heun",
    ts: Float[ArrayLike, " k1"] | None = None,
    return_trajectory: bool = False,
):
    """Integrate the probability-flow ODE from ``x0: (n, *event)`` over ``ts`` (uniform by default).

    Returns ``x1: (n, *event)``, and with ``return_trajectory`` also ``(n, K + 1, *event)``.
    ``ts`` may run backwards (from 1 to 0) to map data to noise. ``context``: optional
    per-sample context (leading axis n). A ``ts`` that is not strictly monotone raises (NaN
    when traced).
    """
    _check(x0, method, context)
    x0 = jnp.asarray(x0)
    grid = _grid(ts, num_steps, x0.dtype)
    out = jax.vmap(lambda x, c: _path(velocity_fn, params, x, grid, method, return_trajectory, c))(x0, context)
    return nan_where(_bad_grid(grid), out)


def ode_sample(
    key: Array,
    velocity_fn: VelocityFn,
    params: Any,
    num_samples: int,
    dim: int | tuple[int, ...],
    *,
    context: Any = None,
    num_steps: int = 100,
    method: str = "heun",
    ts: Float[ArrayLike, " k1"] | None = None,
    return_trajectory: bool = False,
    dtype: Any = None,
):
    """Draw X_0 ~ N(0, I) ``(num_samples, *event)`` (``dim``: d or an event shape) and integrate
    the ODE to t = 1."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    x0 = jax.random.normal(key, (num_samples,) + event_shape(dim), dtype or jnp.result_type(float))
    return ode_solve(
        velocity_fn, params, x0, context=context, num_steps=num_steps, method=method, ts=ts,
        return_trajectory=return_trajectory,
    )


def _flat_jacobian(fn, x):
    """Jacobian of an event-to-event map as a (d, d) matrix of the flattened event."""
    flat = lambda y: fn(y.reshape(x.shape)).reshape(-1)
    return jax.jacfwd(flat)(x.reshape(-1))


def _logdet_path(velocity_fn, params, x0, ts, method, logdet, c=None):
    step = _step(velocity_fn, params, method, c)
    field = lambda y, t: call_field(velocity_fn, params, y, t, c)
    div = lambda x, t: jnp.trace(_flat_jacobian(lambda y: field(y, t), x))

    def body(carry, th):
        x, acc = carry
        t, h = th[0], th[1]
        x_next = step(x, t, h)
        if logdet == "exact":
            _, ld = jnp.linalg.slogdet(_flat_jacobian(lambda y: step(y, t, h), x))
        elif method == "euler":
            ld = h * div(x, t)
        else:
            pred = x + h * field(x, t)
            ld = 0.5 * h * (div(x, t) + div(pred, t + h))
        return (x_next, acc + ld), None

    xs = jnp.stack([ts[:-1], jnp.diff(ts)], axis=-1)
    (x_end, total), _ = jax.lax.scan(body, (x0, jnp.zeros((), x0.dtype)), xs)
    return x_end, total


def _std_normal_logpdf(x):
    return -0.5 * (jnp.sum(x**2) + x.size * jnp.log(2.0 * jnp.pi))


def ode_sample_and_log_prob(
    velocity_fn: VelocityFn,
    params: Any,
    x0: Float[ArrayLike, "n *event"],
    *,
    context: Any = None,
    num_steps: int = 100,
    method: str = "heun",
    ts: Float[ArrayLike, " k1"] | None = None,
    logdet: str = "exact",
) -> tuple[Float[Array, "n *event"], Float[Array, " n"]]:
    """Samples ``(n, *event)`` and their log-densities ``(n,)`` under the sampler started at ``x0``.

    ``logdet="exact"`` (per-step Jacobian log-determinants) or ``"trace"`` (divergence). A
    ``ts`` that is not strictly monotone raises (NaN when traced).
    """
    _check(x0, method, context)
    if logdet not in ("exact", "trace"):
        raise ValueError(f"logdet must be 'exact' or 'trace', got {logdet!r}")
    x0 = jnp.asarray(x0)
    grid = _grid(ts, num_steps, x0.dtype)

    def one(x, c):
        x1, total = _logdet_path(velocity_fn, params, x, grid, method, logdet, c)
        return x1, _std_normal_logpdf(x) - total

    return nan_where(_bad_grid(grid), jax.vmap(one)(x0, context))


def ode_log_prob(
    velocity_fn: VelocityFn,
    params: Any,
    x1: Float[ArrayLike, "n *event"],
    *,
    context: Any = None,
    num_steps: int = 100,
    method: str = "heun",
    logdet: str = "exact",
) -> Float[Array, " n"]:
    """log-density ``(n,)`` of given points ``x1: (n, *event)`` under the flow, by integrating the
    ODE backwards from t = 1 to 0 (uniform grid) and adding the steps' log-determinants.

    The backward discrete map is not the exact inverse of the forward sampler; both converge
    to the flow's density as ``num_steps`` grows (first order for Euler, second for Heun).
    """
    _check(x1, method, context, "x1")
    if logdet not in ("exact", "trace"):
        raise ValueError(f"logdet must be 'exact' or 'trace', got {logdet!r}")
    x1 = _float(x1)
    grid = uniform_time_grid(num_steps, x1.dtype)[::-1]

    def one(x, c):
        z, total = _logdet_path(velocity_fn, params, x, grid, method, logdet, c)
        return _std_normal_logpdf(z) + total

    return jax.vmap(one)(x1, context)

"""Conditional flow matching: the loss, an ``init``/``step`` kernel, and a ``fit`` helper.

A velocity field is a per-sample function ``velocity_fn(params, x: (d,), t: ()) -> (d,)``; for a
Flax module use ``lambda p, x, t: module.apply(p, x, t)``. The loss regresses it on the
conditional velocity of the interpolant X_t = beta_t X_0 + alpha_t X_1:

    L(params) = E_{t ~ U(0,1), X_0 ~ N(0, I), X_1 ~ data} |v(X_t, t) - (alpha_dot_t X_1 + beta_dot_t X_0)|^2.
"""

from __future__ import annotations

import os
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, ArrayLike, Float

from tailjax.flows.schedule import Schedule, rectified_flow
from tailjax.training import FitResult, fit

__all__ = [
    "flow_matching_loss",
    "FlowMatchingState",
    "FlowMatchingInfo",
    "FlowMatching",
    "flow_matching",
    "fit_flow_matching",
]

VelocityFn = Callable[[Any, Array, Array], Array]


def _check_data(data):
    if jnp.ndim(data) != 2:
        raise ValueError(f"data must have shape (n, d), got {jnp.shape(data)}")
    if jnp.shape(data)[0] == 0:
        raise ValueError("data is empty")


def flow_matching_loss(
    velocity_fn: VelocityFn,
    params: Any,
    batch: Float[ArrayLike, "n d"],
    key: Array,
    schedule: Schedule | None = None,
) -> Float[Array, ""]:
    """Conditional flow-matching loss on a batch of data ``(n, d)`` (one t and X_0 per row).

    The squared error is summed over coordinates and averaged over the batch.
    """
    _check_data(batch)
    x1 = jnp.asarray(batch)
    schedule = schedule or rectified_flow()
    key_t, key_0 = jax.random.split(key)
    t = jax.random.uniform(key_t, x1.shape[:1], x1.dtype)
    x0 = jax.random.normal(key_0, x1.shape, x1.dtype)
    xt, target = schedule.interpolate(x0, x1, t)
    pred = jax.vmap(velocity_fn, in_axes=(None, 0, 0))(params, xt, t)
    return jnp.mean(jnp.sum((pred - target) ** 2, axis=-1))


class FlowMatchingState(NamedTuple):
    params: Any
    opt_state: optax.OptState
    step: Array


class FlowMatchingInfo(NamedTuple):
    loss: Array
    grad_norm: Array


class FlowMatching(NamedTuple):
    """``init(params) -> state`` and ``step(state, key, data) -> (state, info)``."""

    init: Callable[[Any], FlowMatchingState]
    step: Callable[[FlowMatchingState, Array, Array], tuple[FlowMatchingState, FlowMatchingInfo]]


def flow_matching(
    velocity_fn: VelocityFn,
    optimizer: optax.GradientTransformation,
    *,
    schedule: Schedule | None = None,
    batch_size: int | None = None,
) -> FlowMatching:
    """Training kernel for conditional flow matching.

    Args:
      velocity_fn: per-sample ``velocity_fn(params, x, t) -> v``.
      optimizer: an optax transformation.
      schedule: interpolant schedule (rectified flow by default).
      batch_size: if given, each step draws this many rows of ``data`` (with replacement)
        from its key, so ``data`` can be the whole training set; otherwise ``data`` is the batch.
    """
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    schedule = schedule or rectified_flow()

    def init(params):
        return FlowMatchingState(params, optimizer.init(params), jnp.asarray(0, jnp.int32))

    def step(state, key, data):
        _check_data(data)
        key_batch, key_loss = jax.random.split(key)
        batch = jnp.asarray(data)
        if batch_size is not None:
            idx = jax.random.randint(key_batch, (batch_size,), 0, batch.shape[0])
            batch = batch[idx]
        loss, grads = jax.value_and_grad(
            lambda p: flow_matching_loss(velocity_fn, p, batch, key_loss, schedule)
        )(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        info = FlowMatchingInfo(loss, optax.global_norm(grads))
        return FlowMatchingState(params, opt_state, state.step + 1), info

    return FlowMatching(init, step)


def fit_flow_matching(
    key: Array,
    velocity_fn: VelocityFn,
    params: Any,
    data: Float[ArrayLike, "n d"],
    num_steps: int,
    *,
    optimizer: optax.GradientTransformation | None = None,
    batch_size: int = 256,
    schedule: Schedule | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: int = 500,
    progress: bool = True,
) -> FitResult:
    """Pre-train a velocity field on ``data: (n, d)`` with :func:`tailjax.training.fit`.

    Minibatches of ``batch_size`` rows are drawn from step keys, so a run resumed from
    ``checkpoint_path`` repeats the uninterrupted run exactly. The default optimizer is Adam
    with learning rate 1e-3. Returns the :class:`~tailjax.training.FitResult` (its ``state``
    is a :class:`FlowMatchingState`).
    """
    _check_data(data)
    optimizer = optimizer or optax.adam(1e-3)
    kernel = flow_matching(velocity_fn, optimizer, schedule=schedule, batch_size=batch_size)
    data = jnp.asarray(data)
    return fit(
        kernel.step,
        kernel.init(params),
        key,
        num_steps,
        batch_fn=lambda i: data,
        checkpoint_path=checkpoint_path,
        checkpoint_every=checkpoint_every,
        progress=progress,
        description="flow matching",
    )

"""Conditional flow matching: the loss, its gradient kernel, and a ``fit`` helper.

A velocity field is a per-sample function ``velocity_fn(params, x, t) -> v`` on one event ``x``
(``(d,)`` or any shape, e.g. an image ``(H, W, C)``); for a Flax module use
``lambda p, x, t: module.apply(p, x, t)``. The loss regresses it on the conditional velocity of
the interpolant X_t = beta_t X_0 + alpha_t X_1:

    L(params) = E_{t ~ U(0,1), X_0 ~ N(0, I), X_1 ~ data} |v(X_t, t) - (alpha_dot_t X_1 + beta_dot_t X_0)|^2.

Conditional (class- or prompt-conditioned) training: a batch ``(data, context)`` with a context
per row makes the field ``velocity_fn(params, x, t, c)``.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, ArrayLike, Float

from tailjax.base import Kernel
from tailjax.flows._fields import call_field, check_contexts, sum_event
from tailjax.flows.schedule import Schedule, rectified_flow
from tailjax.training import FitResult, fit, gradient_kernel, minibatches

__all__ = ["flow_matching_loss", "flow_matching", "fit_flow_matching"]

VelocityFn = Callable[[Any, Array, Array], Array]


def _split(batch):
    """``(data, context)`` of a batch: an array, or a tuple/list ``(data, context)``."""
    if isinstance(batch, (tuple, list)):
        if len(batch) != 2:
            raise ValueError(f"a batch tuple must be (data, context), got {len(batch)} items")
        return batch[0], batch[1]
    return batch, None


def _check_data(data, name="batch", context=None):
    if jnp.ndim(data) < 2:
        raise ValueError(f"{name} must have shape (n, *event), e.g. (n, d), got {jnp.shape(data)}")
    if 0 in jnp.shape(data):
        raise ValueError(f"{name} is empty, got shape {jnp.shape(data)}")
    check_contexts(context, jnp.shape(data)[0], "context")


def flow_matching_loss(
    params: Any,
    batch: Float[ArrayLike, "n *event"] | tuple[Float[ArrayLike, "n *event"], Any],
    key: Array,
    *,
    velocity_fn: VelocityFn,
    schedule: Schedule | None = None,
) -> tuple[Float[Array, ""], dict]:
    """Conditional flow-matching loss on a batch of data ``(n, *event)`` (one t and X_0 per row),
    or on ``(data, context)`` with a context per row (then ``velocity_fn(params, x, t, c)``).

    The squared error is summed over the event axes and averaged over the batch. Returns
    ``(loss, {})`` (the loss convention of :mod:`tailjax.base`).
    """
    data, context = _split(batch)
    _check_data(data, context=context)
    x1 = jnp.asarray(data)
    schedule = schedule or rectified_flow()
    key_t, key_0 = jax.random.split(key)
    t = jax.random.uniform(key_t, x1.shape[:1], x1.dtype)
    x0 = jax.random.normal(key_0, x1.shape, x1.dtype)
    xt, target = schedule.interpolate(x0, x1, t)
    pred = jax.vmap(lambda x, s, c: call_field(velocity_fn, params, x, s, c))(xt, t, context)
    return jnp.mean(sum_event((pred - target) ** 2, 1)), {}


def flow_matching(
    velocity_fn: VelocityFn,
    optimizer: optax.GradientTransformation,
    *,
    schedule: Schedule | None = None,
    batch_size: int | None = None,
) -> Kernel:
    """Training kernel for conditional flow matching, on :func:`~tailjax.training.gradient_kernel`.

    ``init(params) -> TrainState`` and ``step(state, key, batch) -> (TrainState, GradientInfo)``
    with ``batch: (n, *event)`` data, or ``(data, context)`` for a conditional field.

    Args:
      velocity_fn: per-sample ``velocity_fn(params, x, t) -> v``.
      optimizer: an optax transformation.
      schedule: interpolant schedule (rectified flow by default).
      batch_size: if given, each step draws this many rows of its ``batch`` (with
        replacement) from its key, so the batch can be the whole training set; otherwise
        the batch is used as it is (e.g. from :func:`~tailjax.training.minibatches`).
    """
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    loss = functools.partial(flow_matching_loss, velocity_fn=velocity_fn, schedule=schedule or rectified_flow())
    inner = gradient_kernel(loss, optimizer)
    if batch_size is None:
        return inner

    def step(state, key, batch):
        data, context = _split(batch)
        _check_data(data, context=context)
        key_batch, key_loss = jax.random.split(key)
        idx = jax.random.randint(key_batch, (batch_size,), 0, jnp.shape(data)[0])
        rows = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[idx], (data, context))
        return inner.step(state, key_loss, rows if context is not None else rows[0])

    return Kernel(inner.init, step)


def fit_flow_matching(
    key: Array,
    velocity_fn: VelocityFn,
    params: Any,
    data: Float[ArrayLike, "n *event"],
    *,
    num_steps: int,
    context: Any = None,
    optimizer: optax.GradientTransformation | None = None,
    batch_size: int = 256,
    schedule: Schedule | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: int = 500,
    progress: bool = True,
) -> FitResult:
    """Pre-train a velocity field on ``data: (n, *event)`` with :func:`tailjax.training.fit`.

    With ``context`` (a per-row context, e.g. one-hot class labels ``(n, classes)``) the field is
    conditional: ``velocity_fn(params, x, t, c)``. Epoch-wise shuffled minibatches of ``batch_size`` rows
    (:func:`~tailjax.training.minibatches`), so a run resumed from ``checkpoint_path``
    repeats the uninterrupted run exactly. The default optimizer is Adam with learning rate
    1e-3. Returns the :class:`~tailjax.training.FitResult` (its ``state`` is a
    :class:`~tailjax.training.TrainState`).
    """
    _check_data(data, "data", context)
    optimizer = optimizer or optax.adam(1e-3)
    schedule = schedule or rectified_flow()
    kernel = flow_matching(velocity_fn, optimizer, schedule=schedule)
    data = jnp.asarray(data)
    key_data, key_fit = jax.random.split(key)
    config = {"method": "flow_matching", "batch_size": int(batch_size), "data_shape": list(data.shape),
              "schedule": schedule.name}
    if context is not None:
        config["conditional"] = True
    return fit(
        kernel,
        kernel.init(params),
        key_fit,
        num_steps,
        batches=minibatches(key_data, data if context is None else (data, context), batch_size),
        checkpoint_path=checkpoint_path,
        checkpoint_every=checkpoint_every,
        config=config,
        progress=progress,
        description="flow matching",
    )

"""The training loop every DRO baseline shares: a pure kernel over an objective.

An objective is ``objective(params, key, batch) -> scalar`` built from the predictor's
per-sample loss ``loss_fn(w, sample)`` (ERM, KL-DRO's dual, the W-DRO and DRAGEN penalty
forms...). :func:`predictor_kernel` turns it into ``init``/``step`` with ``NamedTuple``
state, :func:`fit_predictor` runs it with :func:`tailjax.training.fit`.
"""

from __future__ import annotations

import os
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tailjax import training

__all__ = [
    "PredictorState",
    "PredictorInfo",
    "predictor_kernel",
    "minibatches",
    "fit_predictor",
    "concatenate",
    "batch_loss",
]

Objective = Callable[[Any, jax.Array, Any], jax.Array]


class PredictorState(NamedTuple):
    params: Any
    opt_state: Any


class PredictorInfo(NamedTuple):
    loss: jax.Array


def batch_loss(loss_fn: Callable[[Any, Any], jax.Array], params: Any, batch: Any) -> jax.Array:
    """Per-sample losses f(w, x_i) of a batch (pytree with leading axis n): shape (n,)."""
    return jax.vmap(loss_fn, in_axes=(None, 0))(params, batch)


def predictor_kernel(
    objective: Objective, optimizer: optax.GradientTransformation
) -> tuple[Callable[[Any], PredictorState], Callable[..., tuple[PredictorState, PredictorInfo]]]:
    """``init(params)`` and ``step(state, key, batch)``: one optimiser step on ``objective``."""

    def init(params):
        return PredictorState(params, optimizer.init(params))

    def step(state, key, batch):
        value, grads = jax.value_and_grad(objective)(state.params, key, batch)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        return PredictorState(optax.apply_updates(state.params, updates), opt_state), PredictorInfo(value)

    return init, step


def minibatches(data: Any, batch_size: int, seed: int = 0) -> Callable[[int], Any]:
    """``batch_fn(i)``: ``batch_size`` rows of ``data`` (pytree, common leading axis) drawn
    without replacement by a generator seeded with (seed, i): resumable."""
    n = jax.tree_util.tree_leaves(data)[0].shape[0]
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must lie in [1, {n}], got {batch_size}")
    host = jax.tree_util.tree_map(np.asarray, data)

    def batch_fn(i):
        idx = np.random.default_rng((seed, i)).choice(n, batch_size, replace=False)
        return jax.tree_util.tree_map(lambda a: a[idx], host)

    return batch_fn


def concatenate(*datasets: Any) -> Any:
    """Concatenate pytrees of arrays along the leading axis (e.g. data and generated data)."""
    return jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs, axis=0), *datasets)


def fit_predictor(
    kernel: tuple[Callable, Callable],
    params: Any,
    key: jax.Array,
    data: Any,
    num_steps: int,
    batch_size: int = 64,
    seed: int = 0,
    checkpoint_path: str | os.PathLike | None = None,
    **fit_kwargs: Any,
) -> training.FitResult:
    """Train from ``params`` for ``num_steps`` minibatch steps (progress bar, checkpoints)."""
    init, step = kernel
    return training.fit(
        step,
        init(params),
        key,
        num_steps,
        batch_fn=minibatches(data, batch_size, seed),
        checkpoint_path=checkpoint_path,
        **fit_kwargs,
    )

"""The two shapes every trainer in tailjax shares.

A **loss** is ``loss(params, batch, key) -> (value, aux)``: a scalar to minimise and any
pytree of diagnostics. Model and configuration come in by keyword (``functools.partial``),
so every family's loss reads ``xxx_loss(params, batch, key, *, model=..., ...)``.

A **kernel** is a :class:`Kernel` ``(init, step)`` (the optax ``GradientTransformation`` and
blackjax pattern): ``init(params, ...) -> State`` and the pure, jittable
``step(state, key, batch) -> (State, Info)``, with ``State`` and ``Info`` ``NamedTuple``\\ s.
:func:`tailjax.training.gradient_kernel` turns a loss and an optax optimiser into one;
kernels with more state (a dual variable, Polyak averages, a sampler) wrap it, and
:func:`tailjax.training.fit` drives any of them.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Protocol

import jax

__all__ = ["Kernel", "Loss"]


class Loss(Protocol):
    """``loss(params, batch, key) -> (value, aux)``."""

    def __call__(self, params: Any, batch: Any, key: jax.Array) -> tuple[jax.Array, Any]: ...


class Kernel(NamedTuple):
    """``init(params, ...) -> state`` and ``step(state, key, batch) -> (state, info)``."""

    init: Callable[..., Any]
    step: Callable[[Any, jax.Array, Any], tuple[Any, Any]]

"""Flax NNX models in tailjax's functional API.

Every trainer in tailjax takes a pure ``apply_fn(params, *args)`` and a parameter pytree (the
Linen convention). An NNX module holds its state inside the object; :func:`from_nnx` splits
it into that pair, and :func:`to_nnx` puts trained parameters back::

    model = MyNNXVelocity(dim=2, rngs=nnx.Rngs(0))
    apply_fn, params = tailjax.nn.from_nnx(model)
    velocity_fn = lambda p, x, t: apply_fn(p, x, t)          # any tailjax trainer
    result = flows.fit_flow_matching(key, velocity_fn, params, data, num_steps=1000)
    trained = tailjax.nn.to_nnx(model, result.state.params)  # an NNX module again

Only the ``nnx.Param`` variables are trained; other state (batch statistics, RNG counters)
is held fixed at its value when :func:`from_nnx` was called.
"""

from __future__ import annotations

from typing import Any, Callable

from flax import nnx

__all__ = ["from_nnx", "to_nnx"]


def from_nnx(module: nnx.Module, method: str | None = None) -> tuple[Callable[..., Any], Any]:
    """``(apply_fn, params)`` of an NNX module: ``apply_fn(params, *args, **kwargs)`` calls
    the module (or its ``method``) with ``params`` in place of its ``nnx.Param`` values.

    Pure: the module passed in is not modified, and ``apply_fn`` works under ``jit``,
    ``vmap`` and ``grad``.
    """
    if not isinstance(module, nnx.Module):
        raise ValueError(f"module must be a flax.nnx.Module, got {type(module).__name__}")
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)
    if method is not None and not callable(getattr(module, method, None)):
        raise ValueError(f"method {method!r} is not a method of {type(module).__name__}")

    def apply_fn(p: Any, *args: Any, **kwargs: Any) -> Any:
        model = nnx.merge(graphdef, p, rest)
        fn = model if method is None else getattr(model, method)
        return fn(*args, **kwargs)

    return apply_fn, params


def to_nnx(module: nnx.Module, params: Any) -> nnx.Module:
    """A copy of ``module`` whose ``nnx.Param`` values are ``params`` (from :func:`from_nnx`)."""
    if not isinstance(module, nnx.Module):
        raise ValueError(f"module must be a flax.nnx.Module, got {type(module).__name__}")
    graphdef, _, rest = nnx.split(module, nnx.Param, ...)
    return nnx.merge(graphdef, params, rest)

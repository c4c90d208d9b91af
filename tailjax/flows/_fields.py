"""Calling conventions shared by the samplers and trainers: event shapes and contexts.

A sample has an *event shape*: ``(d,)`` for vectors, ``(H, W, C)`` for images. Public
functions take ``dim`` as an int d or as an event-shape tuple, and batches as
``(n, *event_shape)``. Fields and rewards are per-sample functions of one event.

A *context* (class label, embedding, any pytree with a leading sample axis) is optional.
Without one, fields are ``velocity_fn(params, x, t)`` and ``base_velocity_fn(x, t)``; with
one they receive it as a last argument: ``velocity_fn(params, x, t, c)``,
``base_velocity_fn(x, t, c)``. The helpers below make one internal convention of both:
every internal call passes ``c`` (``None`` without a context), and ``None`` goes through
``jax.vmap`` untouched.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array

__all__ = [
    "event_shape", "event_axes", "call_field", "call_base", "sum_event", "draw_contexts", "check_contexts",
    "cast_field", "first_context", "check_fields", "batch_sharding", "shard",
]


def event_shape(dim: int | tuple[int, ...] | list[int], name: str = "dim") -> tuple[int, ...]:
    """``(d,)`` for an int d, the tuple itself for an event shape; ``ValueError`` naming ``name``."""
    shape = (dim,) if isinstance(dim, (int,)) or (hasattr(dim, "ndim") and jnp.ndim(dim) == 0) else tuple(dim)
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an int or a tuple of ints, got {dim!r}") from None
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"{name} must be >= 1 (or a non-empty shape of positive sizes), got {dim!r}")
    return shape


def event_axes(x: Array, batch_ndim: int) -> tuple[int, ...]:
    """The axes of ``x`` after its ``batch_ndim`` leading (sample, time) axes."""
    return tuple(range(batch_ndim, jnp.ndim(x)))


def sum_event(x: Array, batch_ndim: int = 0) -> Array:
    """Sum over the event axes of ``x`` (all axes after the first ``batch_ndim``)."""
    return jnp.sum(x, axis=event_axes(x, batch_ndim))


def call_field(velocity_fn: Callable, params: Any, x: Array, t: Array, c: Any) -> Array:
    """``velocity_fn(params, x, t)`` without a context, ``velocity_fn(params, x, t, c)`` with one."""
    return velocity_fn(params, x, t) if c is None else velocity_fn(params, x, t, c)


def call_base(base_velocity_fn: Callable, x: Array, t: Array, c: Any) -> Array:
    """``base_velocity_fn(x, t)`` or ``base_velocity_fn(x, t, c)``."""
    return base_velocity_fn(x, t) if c is None else base_velocity_fn(x, t, c)


def check_contexts(context: Any, n: int, name: str = "context") -> None:
    """Every leaf of a per-sample context must have the leading axis ``n``."""
    if context is None:
        return
    leaves = jax.tree_util.tree_leaves(context)
    if not leaves:
        raise ValueError(f"{name} holds no arrays")
    for leaf in leaves:
        if jnp.ndim(leaf) == 0 or jnp.shape(leaf)[0] != n:
            raise ValueError(f"{name} must have a leading sample axis of length {n}, got shape {jnp.shape(leaf)}")


def draw_contexts(contexts: Any, key: Array, n: int) -> Any:
    """``n`` per-sample contexts: ``contexts(key, n)`` if callable, else ``n`` rows of the array
    (or pytree of arrays) ``contexts`` drawn uniformly with replacement; ``None`` stays ``None``."""
    if contexts is None:
        return None
    if callable(contexts):
        return contexts(key, n)
    m = jax.tree_util.tree_leaves(contexts)[0].shape[0]
    idx = jax.random.randint(key, (n,), 0, m)
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a)[idx], contexts)


def cast_field(velocity_fn: Callable, dtype: Any) -> Callable:
    """A field of the same signature that computes in ``dtype`` (e.g. ``jnp.bfloat16``): its
    floating parameters, ``x`` and ``t`` are cast to ``dtype`` and the output back to the
    dtype of ``x``. ``dtype=None`` returns ``velocity_fn`` itself."""
    if dtype is None:
        return velocity_fn

    def cast(a):
        a = jnp.asarray(a)
        return a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a

    def field(params, x, t, *context):
        out = velocity_fn(jax.tree_util.tree_map(cast, params), cast(x), cast(t), *context)
        return out.astype(jnp.asarray(x).dtype)

    return field


def first_context(contexts: Any, key: Array | None = None) -> Any:
    """One example context (no sample axis) from an array of contexts or a context sampler."""
    if contexts is None:
        return None
    if callable(contexts):
        drawn = contexts(jax.random.key(0) if key is None else key, 1)
    else:
        drawn = contexts
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a)[0], drawn)


def check_fields(
    velocity_fn: Callable, base_velocity_fn: Callable, reward_fn: Callable, params: Any,
    shape: tuple[int, ...], dtype: Any = None, reward_params: Any = None, context: Any = None,
) -> None:
    """Raise ``ValueError`` unless both fields map an event of ``shape`` to the same shape and
    the reward ``reward_fn(x, reward_params[, c])`` returns a scalar.

    ``context`` is one example context (no sample axis) or None. Shapes only
    (``jax.eval_shape``): nothing is computed.
    """
    x = jax.ShapeDtypeStruct(shape, dtype or jnp.result_type(float))
    t = jax.ShapeDtypeStruct((), x.dtype)
    c = context
    for name, fn in (("velocity_fn", lambda x, t: call_field(velocity_fn, params, x, t, c)),
                     ("base_velocity_fn", lambda x, t: call_base(base_velocity_fn, x, t, c))):
        try:
            out = jax.eval_shape(fn, x, t)
        except Exception as err:  # noqa: BLE001 - re-raised with the argument's name
            raise ValueError(f"{name} fails on a point of shape {shape}: {err}") from err
        if out.shape != shape:
            raise ValueError(f"{name} maps shape {shape} to {out.shape}; expected {shape}")
    reward = (lambda x: reward_fn(x, reward_params)) if c is None else (lambda x: reward_fn(x, reward_params, c))
    try:
        out = jax.eval_shape(reward, x)
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"reward_fn fails on a point of shape {shape}: {err}") from err
    if out.shape != ():
        raise ValueError(f"reward_fn must return a scalar per sample, got shape {out.shape}")


def batch_sharding(mesh: Any, batch_size: int) -> Any:
    """``NamedSharding`` of a sample axis over the first axis of ``mesh`` (or None without a
    mesh); ``ValueError`` unless ``batch_size`` divides evenly over it."""
    if mesh is None:
        return None
    from jax.sharding import NamedSharding, PartitionSpec

    axis = mesh.axis_names[0]
    devices = mesh.shape[axis]
    if batch_size % devices:
        raise ValueError(f"batch_size {batch_size} must be divisible by the {devices} devices of the mesh")
    return NamedSharding(mesh, PartitionSpec(axis))


def shard(tree: Any, sharding: Any) -> Any:
    """Constrain every leaf (leading sample axis) of ``tree`` to ``sharding`` inside ``jit``."""
    if sharding is None or tree is None:
        return tree
    return jax.tree_util.tree_map(lambda a: jax.lax.with_sharding_constraint(a, sharding), tree)

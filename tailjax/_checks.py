"""Argument validation shared across tailjax.

Static checks raise ``ValueError`` naming the argument, at call or trace time. Checks of
traced values go through :mod:`jax.experimental.checkify` (see :func:`run_checked`).
"""

from __future__ import annotations

import operator
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

__all__ = [
    "check_open_unit",
    "check_positive",
    "check_side",
    "check_nonempty_last_axis",
    "check_weights",
    "check_float_dtype",
    "check_scalar",
    "check_int",
    "is_concrete",
    "run_checked",
    "traced_out_of_range",
    "nan_where",
    "traced_bad_weights",
]


def is_concrete(x: Any) -> bool:
    """True when ``x`` holds a value now (not a tracer under jit/vmap/grad)."""
    return not isinstance(x, jax.core.Tracer)


def _as_float(value: Any, name: str) -> float | None:
    if not is_concrete(value):
        return None
    arr = np.asarray(value)
    if arr.size != 1:
        raise ValueError(f"{name} must be a scalar, got shape {arr.shape}")
    return float(arr.reshape(()))  # recent NumPy refuses float() of a (1,) array


def check_open_unit(value: Any, name: str, *, closed_right: bool = False) -> None:
    """Raise unless ``value`` lies in (0, 1) (or (0, 1] with ``closed_right``)."""
    v = _as_float(value, name)
    if v is None:
        return
    upper_ok = v <= 1.0 if closed_right else v < 1.0
    if not (v > 0.0 and upper_ok):
        interval = "(0, 1]" if closed_right else "(0, 1)"
        raise ValueError(f"{name} must lie in {interval}, got {v}")


def check_positive(value: Any, name: str, *, allow_zero: bool = False) -> None:
    """Raise unless ``value`` is > 0 (or >= 0 with ``allow_zero``)."""
    v = _as_float(value, name)
    if v is None:
        return
    if not (v >= 0.0 if allow_zero else v > 0.0):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {v}")


def check_scalar(value: Any, name: str) -> None:
    """Raise unless ``value`` is a scalar. Unlike the range checks this also runs on a traced
    value (its shape is static); a concrete one of one element passes, as there."""
    size = np.size(value) if is_concrete(value) else (1 if jnp.ndim(value) == 0 else 0)
    if size != 1:
        raise ValueError(f"{name} must be a scalar, got shape {jnp.shape(value)}")


def check_int(value: Any, name: str, *, minimum: int | None = None) -> int:
    """``value`` as a Python ``int``; raise unless it is a concrete integer >= ``minimum``.

    Python and NumPy integers and 0-d integer arrays pass (``operator.index``), and so does
    an integer-valued float such as ``1e3``; ``2.5`` is refused rather than truncated.
    """
    if not is_concrete(value):
        raise ValueError(f"{name} must be a concrete integer, not a traced value")
    try:
        v = operator.index(value)
    except TypeError:
        if np.ndim(value) != 0 or not np.issubdtype(np.asarray(value).dtype, np.floating) \
                or not float(value).is_integer():
            raise ValueError(f"{name} must be an integer, got {value!r}") from None
        v = int(value)
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return v


def check_side(side: str, name: str = "side") -> None:
    if side not in ("upper", "lower"):
        raise ValueError(f"{name} must be 'upper' or 'lower', got {side!r}")


def check_nonempty_last_axis(x: jax.Array, name: str) -> None:
    if jnp.ndim(x) == 0:
        raise ValueError(f"{name} must have at least one axis, got a scalar")
    if jnp.shape(x)[-1] == 0:
        raise ValueError(f"{name} is empty: its last axis has length 0")


def check_float_dtype(dtype: Any, name: str = "dtype") -> None:
    """Raise unless ``dtype`` (if given) is a floating-point dtype."""
    if dtype is not None and not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"{name} must be a floating-point dtype, got {jnp.dtype(dtype)}")


def check_weights(weights: jax.Array | None, samples: jax.Array, name: str = "weights") -> None:
    """Shape must broadcast to ``samples``; concrete weights must be >= 0 and not all zero."""
    if weights is None:
        return
    if jnp.ndim(weights) == 0 < jnp.ndim(samples):
        raise ValueError(f"{name} must have the samples' last axis, got a scalar")
    try:
        np.broadcast_shapes(jnp.shape(weights), jnp.shape(samples))
    except ValueError:
        raise ValueError(
            f"{name} of shape {jnp.shape(weights)} does not match samples of shape "
            f"{jnp.shape(samples)}"
        ) from None
    if is_concrete(weights) and getattr(weights, "is_fully_addressable", True):
        w = np.asarray(weights)
        if not np.all(np.isfinite(w)):
            raise ValueError(f"{name} must be finite (found NaN or inf)")
        if np.any(w < 0):
            raise ValueError(f"{name} must be non-negative")
        zero = np.all(w == 0, axis=-1)  # non-negative: the sum is zero iff all are (a sum may overflow)
        if w.size and np.any(zero):
            rows = np.argwhere(np.atleast_1d(zero)).ravel().tolist()
            where = "" if w.ndim <= 1 else f" (row(s) {rows[:5]} of the batch)"
            raise ValueError(f"{name} sum to zero{where}")


def traced_out_of_range(value: Any, *, low: float = 0.0, high: float = 1.0,
                        low_closed: bool = False, high_closed: bool = False) -> Any:
    """For a traced scalar, the array flag "outside the interval" (NaN included); ``False``
    for a concrete one (it is checked eagerly). Used to return NaN where a check cannot run."""
    if is_concrete(value):
        return False
    v = jnp.asarray(value)
    above = v >= low if low_closed else v > low
    below = v <= high if high_closed else v < high
    return ~(above & below)


def traced_below_zero(value: Any, *, allow_zero: bool = True) -> Any:
    """Flag of a traced scalar below 0 (``allow_zero=False``: at or below 0) or NaN; ``False``
    for a concrete one (it is checked eagerly)."""
    return traced_out_of_range(value, low=0.0, high=float("inf"), low_closed=allow_zero, high_closed=True)


def nan_where(flag: Any, tree: Any) -> Any:
    """``tree`` with every float leaf NaN where ``flag`` holds (``flag is False``: unchanged)."""
    if flag is False:
        return tree
    return jax.tree_util.tree_map(lambda v: jnp.where(flag, jnp.nan, v), tree)


def traced_bad_weights(weights: Any) -> Any:
    """Per-row flag of traced weights that are not finite, negative or all zero."""
    if weights is None or is_concrete(weights):
        return False
    w = jnp.asarray(weights)
    finite = jnp.isfinite(w)
    return (jnp.any(~finite | (w < 0), axis=-1)
            | (jnp.sum(jnp.where(finite, w, 0), axis=-1) <= 0))


def run_checked(fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` (which may call ``checkify.check``) and raise on a failed check.

    Outside a trace the checks are functionalised here and a failure raises
    ``JaxRuntimeError`` with the check's message. Inside a user's ``jit`` the checks stay
    in the program: wrap the outer function with ``checkify.checkify`` to surface them.
    """
    if all(is_concrete(a) for a in jax.tree_util.tree_leaves(args)):
        err, out = checkify.checkify(jax.jit(fn))(*args)
        err.throw()
        return out
    return fn(*args)

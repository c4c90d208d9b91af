"""Exact VaR of short rows by a bitwise search on order-preserving keys: one read of x.

For x (B, n) with n at most a few thousand, each Pallas (Triton) program loads a few whole
rows into registers and finds each row's rank-th largest value bit by bit: the sign of its
int32 key from one count of the keys >= 0, then 31 more bits, keeping bit b where at least
``rank`` keys are >= the prefix with b set. 32 masked counts of values already in registers,
then E(v) = sum (x - v)_+ and the NaN count from the same registers. Nothing is sorted, so
the cost is one read of the batch and no atomics. Off GPU the same code runs as XLA ops on
the whole batch (32 passes over it: for tests and CPUs, not for speed).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from tailjax.risk._compact import resolve_backend
from tailjax.risk._histogram import from_signed_keys, signed_keys
from tailjax.risk.empirical import accumulator

_VALUES_PER_PROGRAM = 8192  # rows per program: this many values over the padded row length,
# and at most 64: on an H100, programs of 128 to 512 rows gave wrong E(v) and NaN counts when
# the last program was partial (rows of 16-64 values; radix_layout_h100/), 64 or fewer never
_MAX_ROWS_PER_PROGRAM = 64


def _search(keys, use, rank):
    """Per row, the rank-th largest key among ``use`` (rows of int32 keys)."""
    def count_at_least(t):
        return jnp.sum(use & (keys >= t[:, None]), axis=1, dtype=jnp.int32)

    zero = jnp.zeros(keys.shape[:1], jnp.int32)
    t = jnp.where(count_at_least(zero) >= rank, zero, jnp.iinfo(jnp.int32).min)
    for bit in range(30, -1, -1):  # within one sign, the value grows with the low 31 bits
        cand = t | jnp.int32(1 << bit)
        t = jnp.where(count_at_least(cand) >= rank, cand, t)
    return t


def _rows(x, n, rank):
    """(v, E(v), NaN count) per row of x (R, m), of its first n columns, in float32 or wider."""
    acc = accumulator(x.dtype)
    xs = x.astype(acc)
    col = jax.lax.broadcasted_iota(jnp.int32, xs.shape, 1)
    nan = xs != xs
    use = (col < n) & ~nan
    t = _search(signed_keys(xs), use, rank)
    v = from_signed_keys(t, acc)
    excess = jnp.sum(jnp.where(use & (xs > v[:, None]), xs - v[:, None], 0.0), axis=1)
    return v, excess, jnp.sum(nan & (col < n), axis=1, dtype=jnp.int32)


def _kernel(x_ref, v_ref, e_ref, nan_ref, *, n, rank):
    v, e, nans = _rows(x_ref[...], n, rank)
    v_ref[...], e_ref[...], nan_ref[...] = v, e, nans


def _rows_per_program(rows, width):
    """A power of two: 8192 values' worth of rows of ``width``, at most 64 and at most ``rows``."""
    return min(max(1, _VALUES_PER_PROGRAM // width), _MAX_ROWS_PER_PROGRAM, 1 << (rows.bit_length() - 1) if rows else 1)


def _pallas(x, rank, interpret, rows_per_program=None):
    from jax.experimental import pallas as pl
    from jax.experimental.pallas import triton as plt

    rows, n = x.shape
    width = 1 << max(n - 1, 1).bit_length()  # a power of two >= n; the kernel masks the rest
    per = rows_per_program or _rows_per_program(rows, width)  # rows_per_program: a layout to check
    acc = accumulator(x.dtype)
    one = lambda dt: jax.ShapeDtypeStruct((rows,), dt)  # noqa: E731
    out_spec = pl.BlockSpec((per,), lambda i: (i,))
    params = None if interpret else plt.CompilerParams(num_warps=4 if width <= 2048 else 8)
    return pl.pallas_call(
        functools.partial(_kernel, n=n, rank=rank),
        grid=(pl.cdiv(rows, per),),
        in_specs=[pl.BlockSpec((per, width), lambda i: (i, 0))],
        out_specs=[out_spec, out_spec, out_spec],
        out_shape=[one(acc), one(acc), one(jnp.int32)],
        compiler_params=params,
        interpret=interpret,
    )(x)


def radix_select(x, rank, backend="auto"):
    """Per row of x (B, n), floats of at most 32 bits: (v, E(v), NaN count), v the rank-th
    largest non-NaN value, E(v) = sum (x - v)_+ in float32 or wider.

    Args:
      x: ``(B, n)``; the whole row is held in registers, so n should be a few thousand at most.
        Programs hold at most 64 rows (more gave wrong E(v) and NaN counts on an H100 when
        the last program was partial).
      rank: 1 <= rank <= n.
      backend: ``"pallas"``, ``"xla"``, ``"interpret"`` or ``"auto"`` (Pallas on GPU).
    """
    if jnp.finfo(x.dtype).bits > 32:
        raise ValueError(f"radix_select needs floats of at most 32 bits, got {x.dtype}")
    n = x.shape[-1]
    if not 1 <= rank <= n:
        raise ValueError(f"rank must lie in [1, {n}], got {rank}")
    backend = resolve_backend(backend)
    if backend == "xla":
        return _rows(x, n, rank)
    return _pallas(x, rank, interpret=backend == "interpret")

"""The one full pass of :mod:`tailjax.risk.select`: compact the members of a bracket, per row.

Over the first ``(n // block) * block`` values of each row of x (B, n), gathers every value
in [lo_b, hi_b) into that row's buffer of ``capacity`` slots (order unspecified, unused
slots -inf) and returns per row how many there were, how many values are >= hi_b, their
excess sum (x - hi_b)_+, and how many are NaN. On GPU a Pallas (Triton) kernel does it in
one read of x: each block prefix-sums its member mask and reserves its slots with one
atomic add on its row's counter. Elsewhere an XLA version gives the same result.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from tailjax.risk.empirical import accumulator


def _kernel(x_ref, bounds_ref, buf_in, count_in, buf_ref, count_ref, above_ref, excess_ref, nan_ref,
            *, capacity):
    from jax.experimental import pallas as pl
    from jax.experimental.pallas import triton as plt

    del buf_in, count_in  # aliased to buf_ref / count_ref
    xs = x_ref[...]
    lo, hi = bounds_ref[0], bounds_ref[1]
    member = (xs >= lo) & (xs < hi)
    ones = member.astype(jnp.int32)
    total = jnp.sum(ones, dtype=jnp.int32)

    @pl.when(total > 0)
    def _():
        base = plt.atomic_add(count_ref, (jnp.int32(0),), total)
        slots = base + jnp.cumsum(ones, dtype=jnp.int32) - ones
        plt.store(buf_ref.at[slots], xs, mask=member & (slots < capacity))

    ge = xs >= hi
    above_ref[0] = jnp.sum(ge, dtype=jnp.int32)
    acc = excess_ref.dtype  # float32 for 16-bit inputs
    excess_ref[0] = jnp.sum(jnp.where(xs > hi, xs.astype(acc) - hi.astype(acc), 0.0))
    nan_ref[0] = jnp.sum(xs != xs, dtype=jnp.int32)


def _pallas(x, bounds, block, capacity, num_warps, interpret):
    from jax.experimental import pallas as pl
    from jax.experimental.pallas import triton as plt

    rows, g = x.shape[0], x.shape[1] // block
    per_row = lambda size: pl.BlockSpec((None, size), lambda b, i: (b, 0))
    per_block = pl.BlockSpec((None, 1), lambda b, i: (b, i))
    params = None if interpret else plt.CompilerParams(num_warps=num_warps)
    buf, count, above, excess, nans = pl.pallas_call(
        functools.partial(_kernel, capacity=capacity),
        grid=(rows, g),
        in_specs=[pl.BlockSpec((None, block), lambda b, i: (b, i)), per_row(2), per_row(capacity), per_row(1)],
        out_specs=[per_row(capacity), per_row(1), per_block, per_block, per_block],
        out_shape=[
            jax.ShapeDtypeStruct((rows, capacity), x.dtype),
            jax.ShapeDtypeStruct((rows, 1), jnp.int32),
            jax.ShapeDtypeStruct((rows, g), jnp.int32),
            jax.ShapeDtypeStruct((rows, g), accumulator(x.dtype)),
            jax.ShapeDtypeStruct((rows, g), jnp.int32),
        ],
        input_output_aliases={2: 0, 3: 1},
        compiler_params=params,
        interpret=interpret,
    )(x, bounds, jnp.full((rows, capacity), -jnp.inf, x.dtype), jnp.zeros((rows, 1), jnp.int32))
    i32 = jnp.int32
    return buf, count[:, 0], jnp.sum(above, axis=1, dtype=i32), jnp.sum(excess, axis=1), jnp.sum(nans, axis=1, dtype=i32)


def _xla_row(x, lo, hi, capacity):
    member = (x >= lo) & (x < hi)
    (idx,) = jnp.nonzero(member, size=capacity, fill_value=0)
    count = jnp.sum(member, dtype=jnp.int32)
    buf = jnp.where(jnp.arange(capacity, dtype=jnp.int32) < count, x[idx], -jnp.inf)
    ge = x >= hi
    acc = accumulator(x.dtype)
    excess = jnp.sum(jnp.where(x > hi, x.astype(acc) - hi.astype(acc), 0.0))
    return buf, count, jnp.sum(ge, dtype=jnp.int32), excess, jnp.sum(jnp.isnan(x), dtype=jnp.int32)


def resolve_backend(backend):
    """``"pallas"``, ``"interpret"`` or ``"xla"`` for a full pass (``"auto"``: Pallas on GPU)."""
    if backend == "auto":
        return "pallas" if jax.default_backend() == "gpu" else "xla"
    if backend not in ("pallas", "interpret", "xla"):
        raise ValueError(f"backend must be 'auto', 'pallas', 'xla' or 'interpret', got {backend!r}")
    return backend


def compact(x, lo, hi, block, capacity, backend="auto", num_warps=4):
    """(buffers, member counts, counts >= hi, excesses above hi, NaN counts) per row, over the
    whole blocks of x.

    Args:
      x: ``(B, n)`` values; only the first ``(n // block) * block`` of each row are read.
      lo, hi: ``(B,)`` bracket bounds per row.
      block: values per Pallas program (a power of two).
      capacity: buffer slots per row; members beyond it are dropped (the count still
        counts them).
      backend: ``"pallas"``, ``"xla"``, ``"interpret"`` (Pallas interpreter, for tests) or
        ``"auto"`` (Pallas on GPU, XLA elsewhere).
      num_warps: warps per Pallas program.
    """
    backend = resolve_backend(backend)
    if backend != "xla":
        bounds = jnp.stack([lo, hi], axis=1).astype(x.dtype)
        # the grid visits the whole blocks only: no slice (a copy of x) is taken
        return _pallas(x, bounds, block, capacity, num_warps, interpret=backend == "interpret")
    whole = (x.shape[1] // block) * block
    return jax.vmap(functools.partial(_xla_row, capacity=capacity))(x[:, :whole], lo, hi)

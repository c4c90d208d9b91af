"""The one full pass of :mod:`tailjax.risk.select`: compact the members of a bracket, per row.

Over each row of x (B, n), in blocks (the last one partial), gathers every value
in [lo_b, hi_b) into that row's buffer (order unspecified, unused slots -inf) and returns
per row how many there were, how many values are >= hi_b, their excess sum (x - hi_b)_+, and
whether one is NaN (:class:`Pass`). On GPU a Pallas (Triton) kernel does it in one read of x.
Two layouts of the buffer:

- one buffer of ``capacity`` slots per row (``block_slots=None``): each block prefix-sums its
  member mask and reserves its slots with one atomic add on its row's counter;
- a window of ``block_slots`` slots per block: no atomic (and no wait on one); a block with
  more members than its window drops the rest, and the row is then not ``kept``.

Elsewhere an XLA version gives the same buffer.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from tailjax.risk.empirical import accumulator


class Pass(NamedTuple):
    """What one compaction pass returns, per row of x (B, n)."""

    buf: jax.Array  # (B, slots) bracket members, unused slots -inf
    valid: jax.Array  # (B, slots) which slots hold a member
    count: jax.Array  # (B,) members in the bracket (also those dropped)
    kept: jax.Array  # (B,) whether every member is in buf
    c_hi: jax.Array  # (B,) values >= hi
    e_hi: jax.Array  # (B,) sum of (x - hi)_+ (NaN where the row has a NaN)
    has_nan: jax.Array  # (B,) whether the row has a NaN value


def excess_terms(xs, hi, acc):
    """(x - hi)_+ per value in ``acc``, NaN for a NaN value: the excess sum flags a row's NaNs."""
    return jnp.where(xs <= hi, 0.0, xs.astype(acc) - hi.astype(acc))


def store_block_tail(xs, hi, above, above_ref, excess_ref):
    """A Pallas block's count of values >= hi (``above``, summed by the caller) and its excess
    sum (x - hi)_+ (NaN if the block has a NaN value), into the refs."""
    above_ref[0] = above
    excess_ref[0] = jnp.sum(excess_terms(xs, hi, excess_ref.dtype))  # float32 for 16-bit inputs


def member_and_above_counts(member, above):
    """(members, values >= hi) of a block: one packed int32 sum where the block is < 2^15."""
    if member.shape[0] < 1 << 15:
        packed = jnp.sum(member.astype(jnp.int32) + (above.astype(jnp.int32) << 16), dtype=jnp.int32)
        return packed & 0xFFFF, packed >> 16
    return jnp.sum(member, dtype=jnp.int32), jnp.sum(above, dtype=jnp.int32)


def _kernel(x_ref, bounds_ref, buf_in, count_in, buf_ref, count_ref, above_ref, excess_ref, *, windows, n):
    from jax.experimental import pallas as pl

    del buf_in, count_in  # aliased to buf_ref / count_ref
    xs = x_ref[...]
    lo, hi = bounds_ref[0], bounds_ref[1]
    member = (xs >= lo) & (xs < hi)
    refs = (buf_ref, count_ref, above_ref, excess_ref)
    if not n % xs.shape[0]:
        _block(xs, member, hi, *refs, windows=windows)
        return
    # the last block reads past the row: there those lanes are -inf and no members
    start, last = pl.program_id(1) * xs.shape[0], pl.program_id(1) == pl.num_programs(1) - 1

    @pl.when(last)
    def _():
        inside = start + jax.lax.broadcasted_iota(jnp.int32, xs.shape, 0) < n
        _block(jnp.where(inside, xs, -jnp.inf), member & inside, hi, *refs, windows=windows)

    @pl.when(jnp.logical_not(last))
    def _():
        _block(xs, member, hi, *refs, windows=windows)


def _block(xs, member, hi, buf_ref, count_ref, above_ref, excess_ref, *, windows):
    """One block's part of the pass: its members into the buffer, its tail counts into the refs."""
    from jax.experimental import pallas as pl
    from jax.experimental.pallas import triton as plt

    total, above = member_and_above_counts(member, xs >= hi)
    if windows:  # count_ref and buf_ref are this block's own
        count_ref[0] = total

    @pl.when(total > 0)
    def _():
        ones = member.astype(jnp.int32)
        base = 0 if windows else plt.atomic_add(count_ref, (jnp.int32(0),), total)
        slots = base + jnp.cumsum(ones, dtype=jnp.int32) - ones
        plt.store(buf_ref.at[slots], xs, mask=member & (slots < buf_ref.shape[0]))

    store_block_tail(xs, hi, above, above_ref, excess_ref)


def _pallas(x, bounds, block, slots, num_warps, interpret, windows):
    """(buf, member counts, c_hi, e_hi, has_nan): with ``windows``, buf (B, g * slots) and counts
    (B, g) per block; otherwise buf (B, slots) and counts (B, 1) per row."""
    from jax.experimental import pallas as pl
    from jax.experimental.pallas import triton as plt

    rows, g = x.shape[0], -(-x.shape[1] // block)
    per_row = lambda size: pl.BlockSpec((None, size), lambda b, i: (b, 0))
    per_block = lambda size: pl.BlockSpec((None, size), lambda b, i: (b, i))
    buf_spec, width, count_spec, counts = (
        (per_block(slots), g * slots, per_block(1), g) if windows else (per_row(slots), slots, per_row(1), 1))
    params = None if interpret else plt.CompilerParams(num_warps=num_warps)
    buf, count, above, excess = pl.pallas_call(
        functools.partial(_kernel, windows=windows, n=x.shape[1]),
        grid=(rows, g),
        in_specs=[per_block(block), per_row(2), buf_spec, count_spec],
        out_specs=[buf_spec, count_spec, per_block(1), per_block(1)],
        out_shape=[
            jax.ShapeDtypeStruct((rows, width), x.dtype),
            jax.ShapeDtypeStruct((rows, counts), jnp.int32),
            jax.ShapeDtypeStruct((rows, g), jnp.int32),
            jax.ShapeDtypeStruct((rows, g), accumulator(x.dtype)),
        ],
        input_output_aliases={2: 0, 3: 1},
        compiler_params=params,
        interpret=interpret,
    )(x, bounds, jnp.full((rows, width), -jnp.inf, x.dtype), jnp.zeros((rows, counts), jnp.int32))
    return buf, count, *row_tail(above, excess)


def row_tail(above, excess):
    """(c_hi, e_hi, has_nan) of a row from its blocks' counts >= hi and excess sums."""
    e_hi = jnp.sum(excess, axis=1)
    return jnp.sum(above, axis=1, dtype=jnp.int32), e_hi, jnp.isnan(e_hi)


def _xla_blocks(x, lo, hi, block, slots):
    """:func:`_pallas` with windows, in XLA: the same buffer layout."""
    rows, n = x.shape
    g = -(-n // block)
    xb = jnp.pad(x, ((0, 0), (0, g * block - n)), constant_values=-jnp.inf).reshape(rows, g, block)
    inside = (jnp.arange(g * block) < n).reshape(g, block)
    member = inside & (xb >= lo[:, None, None]) & (xb < hi[:, None, None])
    ones = member.astype(jnp.int32)
    local = jnp.where(member, jnp.cumsum(ones, axis=2) - ones, slots)  # slots: dropped
    r, b = jnp.meshgrid(jnp.arange(rows), jnp.arange(g), indexing="ij")
    buf = jnp.full((rows, g, slots), -jnp.inf, x.dtype).at[r[..., None], b[..., None], local].set(xb, mode="drop")
    return buf.reshape(rows, g * slots), jnp.sum(ones, axis=2, dtype=jnp.int32), *excess_above(x, hi)


def excess_above(x, hi):
    """Per row of x (B, m): values >= hi, their excess (x - hi)_+, whether one is NaN."""
    excess = jnp.sum(excess_terms(x, hi[:, None], accumulator(x.dtype)), axis=1)
    return jnp.sum(x >= hi[:, None], axis=1, dtype=jnp.int32), excess, jnp.isnan(excess)


def _xla_rows(x, lo, hi, capacity):
    """:func:`_pallas` in XLA."""
    def row(x, lo, hi):
        member = (x >= lo) & (x < hi)
        (idx,) = jnp.nonzero(member, size=capacity, fill_value=0)
        count = jnp.sum(member, dtype=jnp.int32)
        return jnp.where(jnp.arange(capacity, dtype=jnp.int32) < count, x[idx], -jnp.inf), count

    return *jax.vmap(row)(x, lo, hi), *excess_above(x, hi)


def resolve_backend(backend):
    """``"pallas"``, ``"interpret"`` or ``"xla"`` for a full pass (``"auto"``: Pallas on GPU)."""
    if backend == "auto":
        return "pallas" if jax.default_backend() == "gpu" else "xla"
    if backend not in ("pallas", "interpret", "xla"):
        raise ValueError(f"backend must be 'auto', 'pallas', 'xla' or 'interpret', got {backend!r}")
    return backend


def compact(x, lo, hi, block, capacity, backend="auto", num_warps=4, block_slots=None):
    """The bracket's members and the counts above it per row of x (a :class:`Pass`).

    Args:
      x: ``(B, n)`` values.
      lo, hi: ``(B,)`` bracket bounds per row.
      block: values per Pallas program (a power of two); the last block of a row may be partial.
      capacity: buffer slots per row (``block_slots=None``); members beyond it are dropped
        (the count still counts them).
      backend: ``"pallas"``, ``"xla"``, ``"interpret"`` (Pallas interpreter, for tests) or
        ``"auto"`` (Pallas on GPU, XLA elsewhere).
      num_warps: warps per Pallas program.
      block_slots: ``None`` (one buffer of ``capacity`` per row) or slots per block (a power
        of two; the buffer is then ``ceil(n / block) * block_slots`` per row).
    """
    backend = resolve_backend(backend)
    bounds = jnp.stack([lo, hi], axis=1).astype(x.dtype)
    interpret = backend == "interpret"
    if block_slots is not None:
        if backend == "xla":
            buf, counts, c_hi, e_hi, has_nan = _xla_blocks(x, lo, hi, block, block_slots)
        else:
            buf, counts, c_hi, e_hi, has_nan = _pallas(x, bounds, block, block_slots, num_warps, interpret, True)
        valid = (jnp.arange(block_slots, dtype=jnp.int32) < counts[:, :, None]).reshape(buf.shape)
        kept = jnp.all(counts <= block_slots, axis=1)
        return Pass(buf, valid, jnp.sum(counts, axis=1, dtype=jnp.int32), kept, c_hi, e_hi, has_nan)
    if backend == "xla":
        buf, count, c_hi, e_hi, has_nan = _xla_rows(x, lo, hi, capacity)
    else:
        buf, count, c_hi, e_hi, has_nan = _pallas(x, bounds, block, capacity, num_warps, interpret, False)
        count = count[:, 0]
    valid = jnp.arange(capacity, dtype=jnp.int32) < count[:, None]
    return Pass(buf, valid, count, count <= capacity, c_hi, e_hi, has_nan)

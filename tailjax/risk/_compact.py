"""The one full pass of :mod:`tailjax.risk.select`: compact the members of a bracket.

Over the first ``(n // block) * block`` values of x, gathers every value in [lo, hi) into a
buffer of ``capacity`` slots (order unspecified, unused slots -inf) and returns how many
there were, how many values are >= hi, and their excess sum (x - hi)_+. On GPU a Pallas
(Triton) kernel does it in one read of x: each block prefix-sums its member mask and
reserves its slots with one atomic add. Elsewhere an XLA version gives the same result.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _kernel(x_ref, bounds_ref, buf_in, count_in, buf_ref, count_ref, above_ref, excess_ref, *,
            capacity):
    from jax.experimental import pallas as pl
    from jax.experimental.pallas import triton as plt

    del buf_in, count_in  # aliased to buf_ref / count_ref
    xs = x_ref[...]
    lo, hi = bounds_ref[0], bounds_ref[1]
    member = (xs >= lo) & (xs < hi)
    ones = member.astype(jnp.int32)
    total = jnp.sum(ones)

    @pl.when(total > 0)
    def _():
        base = plt.atomic_add(count_ref, (jnp.int32(0),), total)
        slots = base + jnp.cumsum(ones) - ones
        plt.store(buf_ref.at[slots], xs, mask=member & (slots < capacity))

    ge = xs >= hi
    above_ref[0] = jnp.sum(ge.astype(jnp.int32))
    excess_ref[0] = jnp.sum(jnp.where(ge, xs - hi, 0.0))


def _pallas(x, lo, hi, block, capacity, interpret):
    from jax.experimental import pallas as pl

    g = x.shape[0] // block
    full = lambda size: pl.BlockSpec((size,), lambda i: (0,))
    per_block = pl.BlockSpec((1,), lambda i: (i,))
    buf, count, above, excess = pl.pallas_call(
        functools.partial(_kernel, capacity=capacity),
        grid=(g,),
        in_specs=[pl.BlockSpec((block,), lambda i: (i,)), full(2), full(capacity), full(1)],
        out_specs=[full(capacity), full(1), per_block, per_block],
        out_shape=[
            jax.ShapeDtypeStruct((capacity,), x.dtype),
            jax.ShapeDtypeStruct((1,), jnp.int32),
            jax.ShapeDtypeStruct((g,), jnp.int32),
            jax.ShapeDtypeStruct((g,), x.dtype),
        ],
        input_output_aliases={2: 0, 3: 1},
        interpret=interpret,
    )(x, jnp.stack([lo, hi]), jnp.full((capacity,), -jnp.inf, x.dtype), jnp.zeros((1,), jnp.int32))
    return buf, count[0], jnp.sum(above), jnp.sum(excess)


def _xla(x, lo, hi, capacity):
    member = (x >= lo) & (x < hi)
    (idx,) = jnp.nonzero(member, size=capacity, fill_value=0)
    count = jnp.sum(member, dtype=jnp.int32)
    buf = jnp.where(jnp.arange(capacity) < count, x[idx], -jnp.inf)
    ge = x >= hi
    return buf, count, jnp.sum(ge, dtype=jnp.int32), jnp.sum(jnp.where(ge, x - hi, 0.0))


def compact(x, lo, hi, block, capacity, backend="auto"):
    """(buffer, member count, count >= hi, excess above hi) over the whole blocks of x.

    Args:
      x: ``(n,)`` values; only the first ``(n // block) * block`` are read.
      lo, hi: bracket bounds (scalars).
      block: values per Pallas program (a power of two).
      capacity: buffer slots; members beyond it are dropped (the count still counts them).
      backend: ``"pallas"``, ``"xla"``, ``"interpret"`` (Pallas interpreter, for tests) or
        ``"auto"`` (Pallas on GPU, XLA elsewhere).
    """
    if backend == "auto":
        backend = "pallas" if jax.default_backend() == "gpu" else "xla"
    if backend in ("pallas", "interpret"):
        return _pallas(x, lo, hi, block, capacity, interpret=backend == "interpret")
    if backend != "xla":
        raise ValueError(f"backend must be 'auto', 'pallas', 'xla' or 'interpret', got {backend!r}")
    g = x.shape[0] // block
    return _xla(x[: g * block], lo, hi, capacity)

"""The one full pass of :mod:`tailjax.risk.select` by key histogram: no compaction, per row.

Over the first ``(n // block) * block`` values of each row of x (B, n), counts the values in
[lo_b, hi_b) into ``bins`` bins of their order-preserving integer keys (bin
``(key - key_lo_b) >> shift_b``) and returns per row that histogram, how many values are
>= hi_b, their excess sum (x - hi_b)_+, and how many are NaN. With ``shift_b = 0`` every bin
holds one key, i.e. one value, so the histogram alone selects any rank in the bracket
exactly. An XLA scatter does it everywhere unless ``backend="pallas"``: a Pallas (Triton)
kernel, one read of x, each member adding one to its bin atomically. That kernel's adds did
not reach its output on an H100 (jax 0.11.2; every variant in
``benchmarks/perf/histogram_probe.py``), so it is not the GPU default.
:func:`select_by_histogram` is :mod:`tailjax.risk.select`'s ``method="histogram"`` on it.
Both order-preserving key encodings live here: signed int32 (this pass) and unsigned
(``_keys``, the compaction buffer's histogram finish).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from tailjax.risk._compact import excess_above, resolve_backend, row_tail, store_block_tail
from tailjax.risk.empirical import accumulator


def signed_keys(x):
    """Order-preserving int32 keys of floats of at most 32 bits (-0.0 just below +0.0)."""
    bits = jnp.finfo(x.dtype).bits
    i = jax.lax.bitcast_convert_type(x, jnp.dtype(f"int{bits}"))
    flip = jnp.asarray((1 << (bits - 1)) - 1, i.dtype)
    return jnp.where(i < 0, i ^ flip, i).astype(jnp.int32)


def from_signed_keys(k, dtype):
    """The floats of ``dtype`` whose :func:`signed_keys` are k (int32)."""
    bits = jnp.finfo(dtype).bits
    i = k.astype(jnp.dtype(f"int{bits}"))
    flip = jnp.asarray((1 << (bits - 1)) - 1, i.dtype)
    return jax.lax.bitcast_convert_type(jnp.where(i < 0, i ^ flip, i), jnp.dtype(dtype))


def _keys(x):
    """Order-preserving unsigned integer keys of floats (-0.0 just below +0.0)."""
    bits = jnp.finfo(x.dtype).bits
    u = jnp.dtype(f"uint{bits}")
    raw = jax.lax.bitcast_convert_type(x, u)
    top = jnp.asarray(1 << (bits - 1), u)
    return jnp.where(raw >= top, ~raw, raw | top)


def _from_keys(keys, dtype):
    """The floats whose :func:`_keys` are ``keys``."""
    top = jnp.asarray(1 << (jnp.finfo(dtype).bits - 1), keys.dtype)
    return jax.lax.bitcast_convert_type(jnp.where(keys >= top, keys ^ top, ~keys), jnp.dtype(dtype))


def bin_of(x, key_lo, shift):
    """Bin of x: (key(x) - key_lo) >> shift, the difference taken modulo 2^32 (unsigned)."""
    return jax.lax.shift_right_logical(signed_keys(x) - key_lo, shift)


def _kernel(x_ref, bounds_ref, keys_ref, hist_in, hist_ref, above_ref, excess_ref, *, interpret):
    from jax.experimental.pallas import triton as plt

    del hist_in  # aliased to hist_ref
    xs = x_ref[...]
    lo, hi = bounds_ref[0], bounds_ref[1]
    member = (xs >= lo) & (xs < hi)
    b = bin_of(xs, keys_ref[0], keys_ref[1])
    counted = member & (b >= 0) & (b < hist_ref.shape[0])  # bins past the last are dropped
    b = jnp.where(counted, b, 0)
    ones = counted.astype(jnp.int32)
    if interpret:  # the interpreter has no masked atomics and drops repeated indices
        jax.lax.fori_loop(0, xs.shape[0], lambda j, c: (plt.atomic_add(hist_ref, (b[j],), ones[j]), c)[1], 0)
    else:
        plt.atomic_add(hist_ref, (b,), ones, mask=counted)
    store_block_tail(xs, hi, jnp.sum(xs >= hi, dtype=jnp.int32), above_ref, excess_ref)


def _pallas(x, bounds, keys, block, bins, num_warps, interpret):
    from jax.experimental import pallas as pl
    from jax.experimental.pallas import triton as plt

    rows, g = x.shape[0], x.shape[1] // block
    per_row = lambda size: pl.BlockSpec((None, size), lambda b, i: (b, 0))
    per_block = pl.BlockSpec((None, 1), lambda b, i: (b, i))
    params = None if interpret else plt.CompilerParams(num_warps=num_warps)
    hist, above, excess = pl.pallas_call(
        functools.partial(_kernel, interpret=interpret),
        grid=(rows, g),
        in_specs=[pl.BlockSpec((None, block), lambda b, i: (b, i)), per_row(2), per_row(2), per_row(bins)],
        out_specs=[per_row(bins), per_block, per_block],
        out_shape=[
            jax.ShapeDtypeStruct((rows, bins), jnp.int32),
            jax.ShapeDtypeStruct((rows, g), jnp.int32),
            jax.ShapeDtypeStruct((rows, g), accumulator(x.dtype)),
        ],
        input_output_aliases={3: 0},
        compiler_params=params,
        interpret=interpret,
    )(x, bounds, keys, jnp.zeros((rows, bins), jnp.int32))
    return hist, *row_tail(above, excess)


def histogram_rows(x, lo, hi, key_lo, shift, bins, hist=None):
    """The pass by XLA over all of x (B, n): (histograms, counts >= hi, excesses, whether a
    value is NaN); with ``hist``, the members are added to those histograms."""
    member = (x >= lo[:, None]) & (x < hi[:, None])
    b = jnp.where(member, bin_of(x, key_lo[:, None], shift[:, None]), bins)
    row = jnp.arange(x.shape[0], dtype=jnp.int32)[:, None]
    hist = jnp.zeros((x.shape[0], bins), jnp.int32) if hist is None else hist
    hist = hist.at[row, b].add(1, mode="drop")
    return hist, *excess_above(x, hi)


def key_histogram(x, lo, hi, key_lo, shift, block, bins, backend="auto", num_warps=4):
    """(histograms (B, bins), counts >= hi, excesses above hi (NaN with a NaN value), whether
    a value is NaN) per row, over the whole blocks of x.

    Args:
      x: ``(B, n)`` floats of at most 32 bits; only the first ``(n // block) * block`` of
        each row are read.
      lo, hi: ``(B,)`` bracket bounds per row.
      key_lo, shift: ``(B,)`` int32: a member's bin is ``(key - key_lo) >> shift``; members
        whose bin is ``bins`` or more are not counted.
      block: values per Pallas program (a power of two).
      bins: histogram bins per row.
      backend: ``"pallas"``, ``"xla"``, ``"interpret"`` (Pallas interpreter, for tests) or
        ``"auto"`` (XLA: see the module docstring).
      num_warps: warps per Pallas program.
    """
    backend = "xla" if backend == "auto" else resolve_backend(backend)
    if backend != "xla":
        bounds = jnp.stack([lo, hi], axis=1).astype(x.dtype)
        keys = jnp.stack([key_lo, shift], axis=1).astype(jnp.int32)
        return _pallas(x, bounds, keys, block, bins, num_warps, interpret=backend == "interpret")
    whole = (x.shape[1] // block) * block
    return histogram_rows(x[:, :whole], lo, hi, key_lo, shift, bins)


def _locate(hist, r):
    """Per row, the bin holding the r-th largest counted value, found in two levels (coarse
    bins of many fine ones) rather than one cumulative sum over all bins."""
    rows, bins = hist.shape
    fine = 1 << (int(math.log2(bins)) // 2)
    h = hist.reshape(rows, bins // fine, fine)
    row = jnp.arange(rows)

    def level(counts, offset):  # (bin, count above it) given the count above these bins
        from_top = jnp.cumsum(counts[:, ::-1], axis=1)[:, ::-1] + offset[:, None]
        star = jnp.maximum(jnp.sum(from_top >= r[:, None], axis=1, dtype=jnp.int32) - 1, 0)
        return star, from_top[row, star] - counts[row, star]

    c_star, c_above = level(jnp.sum(h, axis=2), jnp.zeros_like(r))
    f_star, _ = level(h[row, c_star], c_above)
    return c_star * fine + f_star


def select_by_histogram(x, rank, lo, hi, cfg, compact_select):
    """Per row of x (B, n): (v, E(v), ok, whether a value is NaN) from the key histogram of [lo, hi), exact
    where each bin is one key; a row whose bracket spans more keys than ``cfg.key_bins`` is
    refined by ``compact_select(x, rank, lo, hi, cfg)`` over v's bin."""
    n, dt, bins = x.shape[-1], x.dtype, cfg.key_bins
    k_lo, k_hi = signed_keys(lo), signed_keys(hi)
    span = k_hi - k_lo  # modulo 2^32: the members' keys are k_lo + [0, span)
    shift = jnp.maximum(32 - jax.lax.clz(span) - int(math.log2(bins)), 0)
    hist, c_hi, e_hi, has_nan = key_histogram(x, lo, hi, k_lo, shift, cfg.block, bins, cfg.backend, cfg.num_warps)
    g = (n // cfg.block) * cfg.block
    if g < n:  # the values after the last whole block
        hist, c, e, nan = histogram_rows(x[:, g:], lo, hi, k_lo, shift, bins, hist)
        c_hi, e_hi, has_nan = c_hi + c, e_hi + e, has_nan | nan
    r = rank - c_hi  # rank of v among the members
    ok = (r >= 1) & (r <= jnp.sum(hist, axis=1, dtype=jnp.int32))
    star = _locate(hist, r)
    v = from_signed_keys(k_lo + star, dt)
    acc = accumulator(dt)
    b = jnp.arange(bins, dtype=jnp.int32)
    values = from_signed_keys(k_lo[:, None] + b, dt).astype(acc)
    own = jnp.where((b > star[:, None]) & (hist > 0), hist.astype(acc) * (values - v[:, None].astype(acc)), 0.0)
    e_v = e_hi + jnp.where(c_hi > 0, c_hi.astype(acc) * (hi.astype(acc) - v.astype(acc)), 0.0) + jnp.sum(own, 1)
    coarse = ok & (shift > 0)  # v's bin may hold several values

    def refine():
        top = jax.lax.shift_right_logical(span - 1, shift)  # the bin of the largest member key
        lo2 = from_signed_keys(k_lo + (star << shift), dt)
        hi2 = jnp.where(star >= top, hi, from_signed_keys(k_lo + ((star + 1) << shift), dt))
        v2, e2, ok2, _ = compact_select(x, rank, jnp.where(coarse, lo2, lo), jnp.where(coarse, hi2, hi), cfg)
        return jnp.where(coarse, v2, v), jnp.where(coarse, e2, e_v), jnp.where(coarse, ok2, ok)

    v, e_v, ok = jax.lax.cond(jnp.any(coarse), refine, lambda: (v, e_v, ok))
    return v, e_v, ok, has_nan

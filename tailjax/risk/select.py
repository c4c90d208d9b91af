"""CVaR of very many samples without a full sort (bracket, compact, rank).

For ``n`` unweighted samples and tail mass ``p``, the upper CVaR is exactly

    CVaR = v + E(v) / (n p),   E(v) = sum_i (x_i - v)_+,   v = the r-th largest sample,

with r = floor(n p) + 1 (the Rockafellar-Uryasev objective at the VaR ``v``). Only ``v``
must be selected, and E(v) follows from what lies above a nearby threshold ``hi``:
E(v) = sum_{x >= hi} (x - hi) + #{x >= hi} (hi - v) + sum_{v <= x < hi} (x - v).

1. An evenly spread subsample gives a bracket [lo, hi) whose subsample rank interval covers
   r's expected rank +- 5 sd: found by a few rounds of threshold counts (``bracket="search"``:
   no sort; the grid's spacing widens the bracket) or read off the sorted subsample
   (``bracket="sort"``: the narrowest bracket with those subsample counts). The default,
   ``"auto"``, searches a single row and sorts the subsamples of a batch. The rows of a batch
   share one subsample budget (``sample_total``).
2. One pass over x (a Pallas kernel on GPU, at memory bandwidth) counts/sums the values >= hi
   and either
   - (``method="compact"``, the default) compacts the values in [lo, hi) into a small
     buffer. v is the buffer's (r - #{x >= hi})-th largest: a histogram of the members'
     keys (``bins`` bins over [lo, hi)) finds the bin holding it, and only that bin's
     members are gathered and sorted (``finish="sort"`` sorts the whole buffer instead,
     ``finish="radix"`` bins v's bin again by the next bits of the key until v's key is
     known: :mod:`tailjax.risk._finish`);
   - or (``method="histogram"``) counts the values in [lo, hi) into ``key_bins`` bins of
     their order-preserving integer keys. When the bracket spans at most that many keys,
     each bin is one value and v follows from the histogram alone; otherwise the bin
     holding v is the bracket of a compaction pass (a second read). On GPU this pass is an
     XLA scatter unless ``backend="pallas"`` (see :mod:`tailjax.risk._histogram`).
   E(v) follows exactly.

Every step works per row of a batch (B, n): one subsample search per row (vmapped), one pass
over the whole batch, one batched finish of the buffers.

If the bracket misses v, a buffer overflows or v's bin spans several keys and holds more
members than its gather has slots (heavy ties) in any row, ``lax.top_k`` (or a full sort) of
every row runs instead, so the result is always exact. The pass also counts NaN samples: a row with one gives NaN.
Gradients use the exact subgradient: 1/(n p) on values above v, split evenly over ties at v.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import check_nonempty_last_axis, check_open_unit, check_side, is_concrete
from tailjax.risk._bracket import default_capacity, sample_bracket, sample_size
from tailjax.risk._compact import compact
from tailjax.risk._finish import finish_histogram, finish_radix, finish_sort
from tailjax.risk._histogram import select_by_histogram
from tailjax.risk._radix import radix_select
from tailjax.risk.empirical import accumulator, tail_count

__all__ = ["cvar_large", "var_large", "SelectConfig"]


class SelectConfig(NamedTuple):
    """Static tuning of :func:`cvar_large` (defaults chosen on an H200; ``bracket``, ``sample_total`` on an H100;
    ``sample_run``, ``block``, ``num_warps`` and ``count_backend`` on an H200 again,
    ``benchmarks/results/perf_h200/variants_h200/``)."""

    sample_size: int = 1 << 20  # evenly spread subsample per row used to place the bracket
    sample_total: int = 1 << 20  # ... and over all rows of a batch (rows share it, >= 256 each)
    # the subsample is read in runs of this many consecutive values (a power of two), evenly
    # spread: 1 reads single values; 32 reads one 128-byte line of float32 per run
    sample_run: int = 32
    sample_search: tuple[int, int] = (2, 32)  # (rounds, thresholds) searching the subsample
    block: int = 1024  # values per Pallas program in the full pass
    num_warps: int = 2  # warps per Pallas program
    # None: one buffer per row, each block reserving its slots by an atomic add; or slots per
    # block (a power of two): a window of its own, no atomic; a row with a block that overflows
    # its window (members clustered in x) is done again with one buffer per row. On an H100 the
    # windows made the pass 6-10 % faster but not the whole call (the finish reads more)
    block_slots: int | None = None
    capacity: int | None = None  # buffer per row for bracket members (None: twice the expected)
    width_sd: float = 5.0  # bracket half-width in subsample standard deviations
    method: str = "compact"  # full pass: "compact" | "histogram" (bin the bracket by key)
    key_bins: int = 1 << 20  # histogram pass: bins per row (a power of two; one key each if they suffice)
    # "histogram" (bin the buffer, sort v's bin) | "radix" (bin by successive bit fields until
    # v's key is known: as fast on an H100, never overflows with heavy ties) | "sort" (sort the buffer)
    finish: str = "histogram"
    bins: int = 4096  # histogram bins over the bracket (a power of two)
    bin_slots: int | None = None  # gather slots for v's bin (None: 8x the mean bin, >= 1024)
    min_size: int = 1 << 15  # rows shorter than this are reduced as ``short`` says instead
    min_total: int = 1 << 23  # with backend="auto": fewer values in all than this are sorted
    backend: str = "auto"  # "auto" | "pallas" | "xla" | "interpret"
    # "search" (rounds of threshold counts: 0.08 ms for one row of 2^20 values on an H100) |
    # "sort" (order statistics of the sorted subsample: narrower, robust to heavy tails; as fast
    # or up to 1.9x faster for batches of 4-1000 rows on an H100) | "auto" (search one row, sort a batch)
    bracket: str = "auto"
    # the search's counts: "xla" | "pallas" (a kernel: 3.9-4.4x faster at 100 x 2^16 and
    # 1000 x 2^13 on an H100; 13-15 us less for one row of 2^20 on an H200) | "interpret" |
    # "auto" (the kernel where the full pass is a Pallas kernel, else XLA)
    count_backend: str = "auto"
    # rows shorter than min_size: "top_k" (lax.top_k or a sort) | "radix" (a bitwise search
    # on the values' keys, each row in registers: one read; Pallas under backend "auto" on GPU;
    # floats of at most 32 bits, rows of at most short_max values, else top_k) | "auto" (radix
    # for float32 and bfloat16 on GPU: level with top_k to 3.7x faster on an H100, about
    # torch.topk's speed)
    short: str = "auto"
    short_max: int = 1 << 14


def _bin_slots(capacity, cfg):
    return cfg.bin_slots or max(1024, 8 * capacity // cfg.bins)


def _method(x, cfg):
    """The full pass for x (B, n): ``cfg.method``, checked."""
    if cfg.method not in ("histogram", "compact"):
        raise ValueError(f"config.method must be 'histogram' or 'compact', got {cfg.method!r}")
    if cfg.method == "histogram" and jnp.finfo(x.dtype).bits > 32:
        raise ValueError(f"config.method='histogram' needs floats of at most 32 bits, got {x.dtype}")
    return cfg.method


def _select(x, rank, cfg):
    """Per row of x (B, n): (v, E(v), ok, has NaN), v the rank-th largest, E(v) = sum (x - v)_+.

    ok is False where the bracket missed v, or (compaction) the buffer overflowed or v's bin
    overflowed its gather: there v and E(v) are not exact.
    """
    lo, hi = sample_bracket(x, rank, sample_size(*x.shape, cfg), cfg)
    if _method(x, cfg) == "histogram":
        return select_by_histogram(x, rank, lo, hi, cfg, _select_compact)
    return _select_compact(x, rank, lo, hi, cfg)


def _select_compact(x, rank, lo, hi, cfg):
    """_select by compacting the members of [lo, hi) into a buffer and finishing it."""
    m = sample_size(x.shape[0], x.shape[-1], cfg)
    capacity = cfg.capacity or default_capacity(x.shape[-1], rank, m, cfg)
    out = compact(x, lo, hi, cfg.block, capacity, cfg.backend, cfg.num_warps, cfg.block_slots)
    buf, valid, count, c_hi, e_hi = out.buf, out.valid, out.count, out.c_hi, out.e_hi
    r = rank - c_hi  # rank of v among the members
    ok = out.kept & (r >= 1) & (r <= count)
    if cfg.finish == "sort":
        v, e_v = finish_sort(buf, valid, c_hi, e_hi, hi, rank)
    elif cfg.finish == "histogram":
        v, e_v, fits = finish_histogram(buf, valid, c_hi, e_hi, lo, hi, rank, _bin_slots(capacity, cfg), cfg.bins)
        ok = ok & fits
    elif cfg.finish == "radix":
        v, e_v = finish_radix(buf, valid, c_hi, e_hi, lo, hi, rank, cfg.bins)
    else:
        raise ValueError(f"config.finish must be 'histogram', 'radix' or 'sort', got {cfg.finish!r}")
    return v, e_v, ok, out.has_nan


def _sorted_select(x, rank):
    """Per row (v, E(v), NaN count) by ``lax.top_k`` of the rank largest (a sort past n / 8)."""
    n = x.shape[-1]
    top = jax.lax.top_k(x, rank)[0] if rank <= n // 8 else -jnp.sort(-x, axis=-1)
    v = top[:, rank - 1]
    acc = accumulator(x.dtype)
    xa, va = x.astype(acc), v[:, None].astype(acc)
    e = jnp.sum(jnp.where(xa > va, xa - va, 0.0), axis=-1)  # not inf - inf where v is inf
    return v, e, jnp.sum(jnp.isnan(x), axis=-1, dtype=jnp.int32)


def _use_selection(rows, n, cfg):
    if rows == 0 or n < max(cfg.min_size, 16):
        return False
    if cfg.backend == "auto":
        # Off GPU the compaction pass has no bandwidth edge over a sort.
        return jax.default_backend() == "gpu" and rows * n >= cfg.min_total
    return True


def _use_radix(x, cfg):
    n = x.shape[1]
    if x.shape[0] == 0 or jnp.finfo(x.dtype).bits > 32 or n > cfg.short_max:
        return False
    if cfg.short == "auto":  # float32 and bfloat16: the dtypes checked on a GPU
        return (jax.default_backend() == "gpu" and cfg.backend in ("auto", "pallas")
                and x.dtype in (jnp.float32, jnp.bfloat16))
    return cfg.short == "radix"


def _var_excess_upper(x, rank, cfg):
    """Per row of x (B, n): (v, E(v), has NaN)."""
    if not _use_selection(x.shape[0], x.shape[1], cfg):
        if _use_radix(x, cfg):
            v, e, nans = radix_select(x, rank, cfg.backend)
            return v.astype(x.dtype), e, nans > 0
        v, e, nans = _sorted_select(x, rank)
        return v, e, nans > 0
    v, e, ok, has_nan = _select(x, rank, cfg)

    def fallback():
        v, e, _ = _sorted_select(x, rank)
        return v, e

    if cfg.block_slots is not None:  # first again with one buffer per row, then the sort
        sort = fallback

        def fallback():
            v, e, ok, _ = _select(x, rank, cfg._replace(block_slots=None))
            return jax.lax.cond(jnp.all(ok | has_nan), lambda: (v, e), sort)

    v, e = jax.lax.cond(jnp.all(ok | has_nan), lambda: (v, e), fallback)
    return v, e, has_nan


def _rank(n, tail_prob):
    return min(math.floor(tail_count(n, tail_prob)) + 1, n)


def _check(samples, tail_prob, side):
    if not is_concrete(tail_prob):
        raise ValueError(
            "tail_prob must be a concrete Python float for cvar_large/var_large (it fixes the "
            "selected rank when the function is traced); use risk.cvar for a traced tail_prob"
        )
    check_open_unit(tail_prob, "tail_prob")
    check_side(side)
    check_nonempty_last_axis(samples, "samples")


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _cvar_upper(x, tail_prob, cfg):
    return _cvar_upper_fwd(x, tail_prob, cfg)[0]


def _cvar_upper_fwd(x, tail_prob, cfg):
    n = x.shape[-1]
    v, e, has_nan = _var_excess_upper(x, _rank(n, tail_prob), cfg)
    scale = jnp.asarray(tail_count(n, tail_prob), e.dtype)
    value = (v.astype(e.dtype) + e / scale).astype(x.dtype)
    return jnp.where(has_nan, jnp.nan, value), (x, v)


def _cvar_upper_bwd(tail_prob, cfg, res, g):
    x, v = res
    v = v[:, None]
    scale = jnp.asarray(tail_count(x.shape[-1], tail_prob), x.dtype)
    above = jnp.sum(x > v, axis=-1, keepdims=True).astype(x.dtype)
    ties = jnp.sum(x == v, axis=-1, keepdims=True).astype(x.dtype)
    tie_share = (scale - above) / ties
    grad = jnp.where(x > v, 1.0, jnp.where(x == v, tie_share, 0.0)) / scale
    return (g[:, None] * grad,)


_cvar_upper.defvjp(_cvar_upper_fwd, _cvar_upper_bwd)


def var_large(
    samples: Float[ArrayLike, "... n"],
    tail_prob: float,
    *,
    side: str = "upper",
    config: SelectConfig | None = None,
) -> Float[Array, "..."]:
    """VaR of large unweighted samples over the last axis; equals :func:`tailjax.risk.var`
    exactly (NaN for a row with NaN samples, as there)."""
    x, batch = _prepare(samples, tail_prob, side)
    v, _, has_nan = _var_excess_upper(x, _rank(x.shape[-1], tail_prob), _config(config))
    v = jnp.where(has_nan, jnp.nan, v).reshape(batch)
    return v if side == "upper" else -v


def cvar_large(
    samples: Float[ArrayLike, "... n"],
    tail_prob: float,
    *,
    side: str = "upper",
    config: SelectConfig | None = None,
) -> Float[Array, "..."]:
    """CVaR of large unweighted samples over the last axis, by selection instead of a sort.

    Same value as :func:`tailjax.risk.cvar`: the VaR is selected exactly, and the tail sum
    is accumulated in blocks, so the two differ only by float rounding of that sum (NaN for
    a row with NaN samples, as there). Built for many samples on a GPU: a row, or a batch
    of rows ``(..., n)``, costs about one read of the array. Rows shorter than
    ``config.min_size``, fewer than ``config.min_total`` values in all, or any input off GPU
    with ``backend="auto"`` are reduced by ``lax.top_k`` or a sort instead; on a GPU, float32
    and bfloat16 rows of at most ``config.short_max`` values by a bitwise search of each row held in
    registers (``config.short``). ``tail_prob``
    must be a Python float. Differentiable in ``samples``. Pass a batch axis rather than
    ``vmap`` it (under ``vmap`` its fallback branch would run too). Heavy-tailed rows (e.g.
    Cauchy) stay exact, but for a single row the default bracket search spreads its
    thresholds evenly in value, so the bracket can hold most of the row and the sort runs:
    pass ``SelectConfig(bracket="sort")`` for them (the bracket is then read off the sorted
    subsample, by rank, as it is for every batch by default).

    Args:
      samples: ``(..., n)`` samples, n < 2**31; reduced over the last axis.
      tail_prob: tail mass in (0, 1).
      side: ``"upper"`` (losses) or ``"lower"`` (rewards).
      config: a :class:`SelectConfig` (subsample size, how the bracket is placed, thresholds,
        block size, warps, buffer capacities, the buffer's finish and bins, size thresholds,
        ``backend="auto"|"pallas"|"xla"``).
    """
    x, batch = _prepare(samples, tail_prob, side)
    value = _cvar_upper(x, float(tail_prob), _config(config)).reshape(batch)
    return value if side == "upper" else -value


def _config(config):
    """``config`` (default: ``SelectConfig()``), its choices checked whichever path runs."""
    cfg = config or SelectConfig()
    choices = [("method", ("compact", "histogram")), ("finish", ("histogram", "radix", "sort")),
               ("bracket", ("auto", "search", "sort")), ("count_backend", ("auto", "xla", "pallas", "interpret")),
               ("short", ("auto", "radix", "top_k"))]
    for name, allowed in choices:
        if getattr(cfg, name) not in allowed:
            raise ValueError(f"config.{name} must be one of {allowed}, got {getattr(cfg, name)!r}")
    run = cfg.sample_run
    if not isinstance(run, int) or run < 1 or run & (run - 1):
        raise ValueError(f"config.sample_run must be a power of two, got {run!r}")
    slots = cfg.block_slots
    if slots is not None and (not isinstance(slots, int) or slots < 1 or slots & (slots - 1)):
        raise ValueError(f"config.block_slots must be None or a power of two, got {slots!r}")
    return cfg


_MAX_ROW = 2**31 - 1


def _prepare(samples, tail_prob, side):
    """(x as (B, n), oriented so that the tail is upper; the batch shape)."""
    _check(samples, tail_prob, side)
    x = jnp.asarray(samples)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    if x.shape[-1] > _MAX_ROW:  # the passes count in int32
        raise ValueError(f"samples: rows of at most 2**31 - 1 values are supported, got {x.shape[-1]}")
    batch = x.shape[:-1]
    x = x.reshape(-1, x.shape[-1])
    return (x if side == "upper" else -x), batch

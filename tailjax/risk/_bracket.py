"""Where :mod:`tailjax.risk.select` looks for the VaR: a bracket [lo, hi) per row, from a subsample.

An evenly spread subsample of m values per row brackets the rank-th largest value: the
bracket's subsample rank interval covers its expected subsample rank +- ``width_sd`` sd. It is
found by rounds of threshold counts (``bracket="search"``, :func:`search_bracket`; counts by
:mod:`tailjax.risk._counts`) or read off the sorted subsample (``bracket="sort"``);
``bracket="auto"`` searches a single row and sorts the subsamples of a batch (:func:`bracket_kind`).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from tailjax.risk._compact import resolve_backend
from tailjax.risk._counts import counts_at_least


def search_bracket(values, lo, hi, targets_hi, targets_lo, search, counts):
    """Refine [lo, hi] so that #(>= hi) <= targets_hi and #(>= lo) >= targets_lo, tightly.

    Each round spreads J values evenly over the current interval of each bound, counts,
    and keeps the sub-interval where the count crosses its target (the first round shares
    one grid between the two bounds).
    """
    rounds, num = search
    frac = jnp.linspace(0.0, 1.0, num, dtype=values.dtype)
    bounds = jnp.stack([jnp.stack([lo, hi]), jnp.stack([lo, hi])])  # per target: [L, U]
    for k in range(rounds):
        grid = bounds[:, :1] + (bounds[:, 1:] - bounds[:, :1]) * frac  # (2, J) ascending
        if k == 0:
            found = jnp.broadcast_to(counts(values, grid[0]), (2, num))
        else:
            found = counts(values, grid.reshape(-1)).reshape(2, -1)
        # upper bound: first grid point whose count is <= target (exists: the last is U)
        j_hi = jnp.argmax(found[0] <= targets_hi)
        # lower bound: last grid point whose count is >= target (exists: the first is L)
        j_lo = jnp.sum(found[1] >= targets_lo) - 1
        new_hi = jnp.stack([grid[0, jnp.maximum(j_hi - 1, 0)], grid[0, j_hi]])
        new_lo = jnp.stack([grid[1, j_lo], grid[1, jnp.minimum(j_lo + 1, num - 1)]])
        bounds = jnp.stack([new_hi, new_lo])
    return bounds[1, 0], bounds[0, 1]


def sample_size(rows, n, cfg):
    """Subsample per row: cfg.sample_size, or the power of two at most n / 8 and at most
    cfg.sample_total / rows (but not below 256 for that share)."""
    cap = min(max(n // 8, 1), max(cfg.sample_total // max(rows, 1), 256))
    return min(cfg.sample_size, 1 << math.floor(math.log2(cap)))


def spread(n, rank, m):
    """Expected subsample rank of the rank-th largest value, and its sd."""
    centre = rank * m / n
    return centre, math.sqrt(max(centre * (1.0 - centre / m), 1.0))


def bracket_kind(rows, cfg):
    """``cfg.bracket``, with ``"auto"`` resolved: the search for one row, the sorted
    subsample for a batch (faster or equal at every batch shape and tail timed on an H100)."""
    if cfg.bracket != "auto":
        return cfg.bracket
    return "search" if rows == 1 else "sort"


def sample_indices(n, m, run):
    """m positions in [0, n), evenly spread over all of it (a strided slice would miss the end
    of a sorted array), in runs of ``run`` consecutive positions (a power of two; a run is
    one memory transaction rather than ``run`` of them)."""
    run = min(run, m)
    chunks = m // run
    centres = ((jnp.arange(chunks, dtype=jnp.float32) + 0.5) * (n / chunks)).astype(jnp.int32)
    starts = jnp.clip(centres - run // 2, 0, n - run)
    return (starts[:, None] + jnp.arange(run, dtype=jnp.int32)).reshape(-1)


def count_backend(cfg):
    """``cfg.count_backend``, with ``"auto"`` resolved: the Pallas counts where the full pass
    is a Pallas kernel (on GPU), XLA elsewhere."""
    if cfg.count_backend != "auto":
        return cfg.count_backend
    return "pallas" if resolve_backend(cfg.backend) == "pallas" else "xla"


def sample_bracket(x, rank, m, cfg):
    """Per row [lo, hi): a bracket of the rank-th largest value from an even subsample."""
    n = x.shape[-1]
    sample = x[:, sample_indices(n, m, cfg.sample_run)]
    centre, sd = spread(n, rank, m)
    want_hi = math.floor(centre - cfg.width_sd * sd - 1.0)  # #(sample >= hi) <= want_hi
    want_lo = math.ceil(centre + cfg.width_sd * sd + 1.0)  # #(sample >= lo) >= want_lo
    inf = jnp.asarray(jnp.inf, x.dtype)
    kind = bracket_kind(x.shape[0], cfg)
    if kind == "sort":
        s = jnp.sort(sample, axis=-1)
        # the want_lo-th largest has #(>= it) >= want_lo; above the (want_hi + 1)-th largest
        # lie at most want_hi sample values
        lo = s[:, m - min(want_lo, m)]
        hi = jnp.nextafter(s[:, m - 1 - max(want_hi, 0)], inf)
    elif kind == "search":

        def row(s):
            top_open = jnp.nextafter(jnp.max(s), inf)  # nothing in the sample is >= this
            return search_bracket(s, jnp.min(s), top_open, max(want_hi, 0), min(want_lo, m), cfg.sample_search,
                           functools.partial(counts_at_least, backend=count_backend(cfg)))

        lo, hi = jax.vmap(row)(sample)
    else:
        raise ValueError(f"config.bracket must be 'auto', 'search' or 'sort', got {cfg.bracket!r}")
    # A tail thinner than the subsample resolves is bracketed from the very top (and a
    # bracket reaching the bottom from the very bottom).
    lo = lo if want_lo <= m else jnp.full_like(lo, -inf)
    hi = hi if want_hi >= 0 else jnp.full_like(hi, inf)
    # A search over infinite values can place a bound at NaN (inf * 0): such a row gets the
    # empty bracket [inf, inf), which no value joins, so it takes the exact fallback (and the
    # pass's excess above hi stays NaN only for a NaN value).
    lost = jnp.isnan(lo) | jnp.isnan(hi)
    return jnp.where(lost, inf, lo), jnp.where(lost, inf, hi)


def default_capacity(n, rank, m, cfg):
    """A power of two above twice the expected number of bracket members."""
    _, sd = spread(n, rank, m)
    expected = 2.0 * (cfg.width_sd * sd + 2.0) * n / m
    return max(1 << math.ceil(math.log2(2.0 * expected)), 256)

"""CVaR of very many samples without a full sort (bracket, compact, rank).

For ``n`` unweighted samples and tail mass ``p``, the upper CVaR is exactly

    CVaR = v + E(v) / (n p),   E(v) = sum_i (x_i - v)_+,   v = the r-th largest sample,

with r = floor(n p) + 1 (the Rockafellar-Uryasev objective at the VaR ``v``). Only ``v``
must be selected, and E(v) follows from what lies above a nearby threshold ``hi``:
E(v) = sum_{x >= hi} (x - hi) + #{x >= hi} (hi - v) + sum_{v <= x < hi} (x - v).

1. A strided subsample is searched (a few rounds of threshold counts, no sort) for a
   bracket [lo, hi) whose subsample rank interval covers r's expected rank +- 5 sd.
2. One pass over x (a Pallas kernel on GPU, at memory bandwidth) compacts the values in
   [lo, hi) into a small buffer and counts/sums the values >= hi.
3. Rounds of threshold counts on the buffer narrow the bracket to a few candidates, which
   are ranked pairwise; v and E(v) follow exactly.

If the bracket misses v or a buffer overflows (adversarial order, an unlucky subsample), a
full sort runs instead, so the result is always exact. Gradients use the exact
subgradient: 1/(n p) on values above v, split evenly over ties at v.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import check_nonempty_last_axis, check_open_unit, check_side, is_concrete
from tailjax.risk._compact import compact
from tailjax.risk.empirical import tail_count

__all__ = ["cvar_large", "var_large", "SelectConfig"]


class SelectConfig(NamedTuple):
    """Static tuning of :func:`cvar_large` (defaults chosen on an H100 for n = 1e8)."""

    sample_size: int = 1 << 20  # evenly spread subsample used to place the bracket
    sample_search: tuple[int, int] = (2, 32)  # (rounds, thresholds) searching the subsample
    buffer_search: tuple[int, int] = (2, 32)  # (rounds, thresholds) searching the buffer
    block: int = 2048  # values per Pallas program in the full pass
    capacity: int | None = None  # buffer for bracket members (None: twice the expected)
    max_members: int = 4096  # candidates ranked pairwise at the end
    width_sd: float = 5.0  # bracket half-width in subsample standard deviations
    backend: str = "auto"  # "auto" | "pallas" | "xla" | "interpret"


def _counts_at_least(values, thresholds):
    """#(values >= T_j) for every threshold, as a two-level reduction."""
    rows = math.gcd(values.shape[0], 1024)
    # (rows, J, cols): the reduced axis is the contiguous one
    ge = values.reshape(rows, 1, -1) >= thresholds[None, :, None]
    return jnp.sum(jnp.sum(ge, axis=2, dtype=jnp.int32), axis=0)


def _search(values, lo, hi, targets_hi, targets_lo, search):
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
            counts = jnp.broadcast_to(_counts_at_least(values, grid[0]), (2, num))
        else:
            counts = _counts_at_least(values, grid.reshape(-1)).reshape(2, -1)
        # upper bound: first grid point whose count is <= target (exists: the last is U)
        j_hi = jnp.argmax(counts[0] <= targets_hi)
        # lower bound: last grid point whose count is >= target (exists: the first is L)
        j_lo = jnp.sum(counts[1] >= targets_lo) - 1
        new_hi = jnp.stack([grid[0, jnp.maximum(j_hi - 1, 0)], grid[0, j_hi]])
        new_lo = jnp.stack([grid[1, j_lo], grid[1, jnp.minimum(j_lo + 1, num - 1)]])
        bounds = jnp.stack([new_hi, new_lo])
    return bounds[1, 0], bounds[0, 1]


def _sample_bracket(x, rank, cfg):
    n = x.shape[0]
    m = cfg.sample_size
    # evenly spread over all of x (a strided slice would miss the end of a sorted array)
    idx = ((jnp.arange(m, dtype=jnp.float32) + 0.5) * (n / m)).astype(jnp.int32)
    sample = x[jnp.clip(idx, 0, n - 1)]
    centre = rank * m / n
    sd = math.sqrt(max(centre * (1.0 - centre / m), 1.0))
    want_hi = math.floor(centre - cfg.width_sd * sd - 1.0)  # #(sample >= hi) <= want_hi
    want_lo = math.ceil(centre + cfg.width_sd * sd + 1.0)  # #(sample >= lo) >= want_lo
    inf = jnp.asarray(jnp.inf, x.dtype)
    top_open = jnp.nextafter(jnp.max(sample), inf)  # nothing in the sample is >= this
    lo, hi = _search(sample, jnp.min(sample), top_open, max(want_hi, 0), min(want_lo, m),
                     cfg.sample_search)
    # A tail thinner than the subsample resolves is bracketed from the very top (and a
    # bracket reaching the bottom from the very bottom).
    return (lo if want_lo <= m else -inf), (hi if want_hi >= 0 else inf)


def _default_capacity(n, rank, cfg):
    """A power of two above twice the expected number of bracket members."""
    m = cfg.sample_size
    centre = rank * m / n
    sd = math.sqrt(max(centre * (1.0 - centre / m), 1.0))
    expected = 2.0 * (cfg.width_sd * sd + 2.0) * n / m
    return max(1 << math.ceil(math.log2(2.0 * expected)), 1024)


def _select(x, rank, cfg):
    """(v, E(v), ok): v the rank-th largest of x, E(v) = sum (x - v)_+."""
    n, dt = x.shape[0], x.dtype
    inf = jnp.asarray(jnp.inf, dt)
    lo, hi = _sample_bracket(x, rank, cfg)
    g = (n // cfg.block) * cfg.block
    capacity = cfg.capacity or _default_capacity(n, rank, cfg)
    buf, count, c_hi, e_hi = compact(x, lo, hi, cfg.block, capacity, cfg.backend)
    rest = jnp.full((cfg.block,), -inf, dt).at[: n - g].set(x[g:])  # pad to a whole block
    member = (rest >= lo) & (rest < hi)
    buf = jnp.concatenate([buf, jnp.where(member, rest, -inf)])
    count = count + jnp.sum(member, dtype=jnp.int32)
    c_hi = c_hi + jnp.sum(rest >= hi, dtype=jnp.int32)
    e_hi = e_hi + jnp.sum(jnp.where(rest >= hi, rest - hi, 0.0))
    # Narrow inside the buffer: v is the r-th largest member.
    r = rank - c_hi
    top = jnp.nextafter(jnp.max(buf), inf)
    lo2, hi2 = _search(buf, lo, top, r - 1, r, cfg.buffer_search)
    above2 = jnp.sum(buf >= hi2, dtype=jnp.int32)
    cand = (buf >= lo2) & (buf < hi2)
    n_cand = jnp.sum(cand)
    (pos,) = jnp.nonzero(cand, size=cfg.max_members, fill_value=0)
    valid = jnp.arange(cfg.max_members) < n_cand
    m = buf[pos]
    greater = jnp.sum(valid[None, :] & (m[None, :] > m[:, None]), axis=1)
    equal = jnp.sum(valid[None, :] & (m[None, :] == m[:, None]), axis=1)
    r2 = r - above2
    hit = valid & (greater < r2) & (r2 <= greater + equal)
    v = jnp.max(jnp.where(hit, m, -inf))
    shift = jnp.where(c_hi > 0, c_hi.astype(dt) * (hi - v), 0.0)
    e_v = e_hi + shift + jnp.sum(jnp.maximum(buf - v, 0.0))
    ok = (lo > -inf) & (count <= capacity) & (r >= 1) & (r <= count) & (n_cand <= cfg.max_members) & jnp.any(hit)
    return v, e_v, ok


def _sorted_select(x, rank):
    v = -jnp.sort(-x)[rank - 1]
    return v, jnp.sum(jnp.maximum(x - v, 0.0))


def _var_excess_upper(x, rank, cfg):
    small = x.shape[0] < 8 * cfg.sample_size
    # Off GPU the compaction pass has no bandwidth edge over a sort.
    if small or (cfg.backend == "auto" and jax.default_backend() != "gpu"):
        return _sorted_select(x, rank)
    v, e, ok = _select(x, rank, cfg)
    return jax.lax.cond(ok, lambda: (v, e), lambda: _sorted_select(x, rank))


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
    if jnp.ndim(samples) != 1:
        raise ValueError(f"samples must be 1-D, got shape {jnp.shape(samples)}")


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _cvar_upper(x, tail_prob, cfg):
    return _cvar_upper_fwd(x, tail_prob, cfg)[0]


def _cvar_upper_fwd(x, tail_prob, cfg):
    n = x.shape[0]
    v, e = _var_excess_upper(x, _rank(n, tail_prob), cfg)
    scale = jnp.asarray(tail_count(n, tail_prob), x.dtype)
    return v + e / scale, (x, v)


def _cvar_upper_bwd(tail_prob, cfg, res, g):
    x, v = res
    scale = jnp.asarray(tail_count(x.shape[0], tail_prob), x.dtype)
    above = jnp.sum(x > v).astype(x.dtype)
    ties = jnp.sum(x == v).astype(x.dtype)
    tie_share = (scale - above) / ties
    grad = jnp.where(x > v, 1.0, jnp.where(x == v, tie_share, 0.0)) / scale
    return (g * grad,)


_cvar_upper.defvjp(_cvar_upper_fwd, _cvar_upper_bwd)


def var_large(
    samples: Float[ArrayLike, " n"],
    tail_prob: float,
    *,
    side: str = "upper",
    config: SelectConfig | None = None,
) -> Float[Array, ""]:
    """VaR of a large 1-D unweighted sample; equals :func:`tailjax.risk.var` exactly."""
    x = _prepare(samples, tail_prob, side)
    v, _ = _var_excess_upper(x, _rank(x.shape[0], tail_prob), config or SelectConfig())
    v = jnp.where(jnp.any(jnp.isnan(x)), jnp.nan, v)  # NaN samples give NaN, as risk.var
    return v if side == "upper" else -v


def cvar_large(
    samples: Float[ArrayLike, " n"],
    tail_prob: float,
    *,
    side: str = "upper",
    config: SelectConfig | None = None,
) -> Float[Array, ""]:
    """CVaR of a large 1-D unweighted sample by selection instead of a full sort.

    Same value as :func:`tailjax.risk.cvar`: the VaR is selected exactly, and the tail sum
    is accumulated in blocks, so the two differ only by float rounding of that sum. Built
    for tens of millions of samples on a GPU (about one read of the array); below
    ``8 * config.sample_size`` samples, or off GPU with ``backend="auto"``, it sorts.
    ``tail_prob`` must be a Python float. Differentiable in ``samples``. Do not ``vmap``
    it (its fallback branch would run too); use :func:`tailjax.risk.cvar` for batches.

    Args:
      samples: ``(n,)`` samples.
      tail_prob: tail mass in (0, 1).
      side: ``"upper"`` (losses) or ``"lower"`` (rewards).
      config: a :class:`SelectConfig` (subsample size, thresholds, block size, buffer
        capacities, ``backend="auto"|"pallas"|"xla"``).
    """
    x = _prepare(samples, tail_prob, side)
    return _cvar_upper(x, float(tail_prob), config or SelectConfig()) * (1 if side == "upper" else -1)


def _prepare(samples, tail_prob, side):
    _check(samples, tail_prob, side)
    x = jnp.asarray(samples)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x if side == "upper" else -x

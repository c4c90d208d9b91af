"""The finish of :mod:`tailjax.risk.select`: v and E(v) per row from its buffer of bracket members.

Each row's buffer holds the members of [lo, hi) (``valid`` marks them); ``c_hi`` values lie at
or above hi with excess ``e_hi`` above it, so v, the rank-th largest value, is the
(rank - c_hi)-th largest member. Three ways to find it:

- :func:`finish_sort`: sort the whole buffer.
- :func:`finish_histogram`: a histogram of the members' keys finds v's bin; only that bin's
  members are gathered and sorted (``fits`` says whether they fitted the gather).
- :func:`finish_radix`: histograms of successive bit fields of the members' keys, each over
  the members left in the previous level's bin of v, until v's key is known: no sort, no
  gather, always exact.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from tailjax.risk._histogram import _from_keys, _keys
from tailjax.risk.empirical import accumulator


def finish_sort(buf, valid, c_hi, e_hi, hi, rank):
    """Per row (v, E(v)) from the whole buffer of bracket members, sorted (E in float32 at
    least): v is the (rank - c_hi)-th largest member."""
    desc = -jnp.sort(-jnp.where(valid, buf, -jnp.inf), axis=-1)
    v = jnp.take_along_axis(desc, jnp.clip(rank - c_hi - 1, 0, buf.shape[-1] - 1)[:, None], axis=-1)[:, 0]
    return v, excess(buf, valid, e_hi, c_hi, hi, v)


def excess(buf, valid, e_hi, c_hi, hi, v):
    """E(v): the excess above hi moved down to v, plus the members' own excess above v."""
    acc = accumulator(buf.dtype)
    shift = jnp.where(c_hi > 0, c_hi.astype(acc) * (hi.astype(acc) - v.astype(acc)), 0.0)
    own = jnp.where(valid, jnp.maximum(buf.astype(acc) - v[:, None].astype(acc), 0.0), 0.0)
    return e_hi + shift + jnp.sum(own, axis=-1)


def _bin_of_v(b, inside, r, bins):
    """Per row (star, above, in_star): the bin of v among ``bins`` bins (the members
    ``inside`` counted at their bins b), the members in higher bins and in v's bin, for v the
    r-th largest member (bin 0 where r is out of range: the caller checks r)."""
    rows = b.shape[0]
    row = jnp.arange(rows, dtype=jnp.int32)[:, None]
    counts = jnp.zeros((rows, bins), jnp.int32).at[row, jnp.where(inside, b, bins)].add(1, mode="drop")
    from_top = jnp.cumsum(counts[:, ::-1], axis=1)[:, ::-1]  # members in this bin or above
    star = jnp.maximum(jnp.sum(from_top >= r[:, None], axis=1, dtype=jnp.int32) - 1, 0)
    pick = lambda a: jnp.take_along_axis(a, star[:, None], axis=1)[:, 0]
    in_star = pick(counts)
    return star, pick(from_top) - in_star, in_star


def finish_histogram(buf, valid, c_hi, e_hi, lo, hi, rank, slots, bins):
    """Per row (v, E(v), fits): v from a histogram of the valid members' keys over [lo, hi).

    The bins split [key(lo), key(hi)) by the top bits of key - key(lo), so they are ordered
    as the values; v is the (rank - c_hi - #above)-th largest member of its bin, which is
    gathered into ``slots`` slots and sorted, unless each bin is one key (then v is its
    bin's value). ``fits`` is False where v's bin has more keys than one and more members
    than slots.
    """
    rows = buf.shape[0]
    keys, k_lo, k_hi = _keys(buf), _keys(lo), _keys(hi)
    span = k_hi - k_lo  # members' keys are in [k_lo, k_hi)
    bits = jnp.finfo(buf.dtype).bits
    length = bits - jax.lax.clz(span).astype(jnp.int32)  # bit length of span
    shift = jnp.maximum(length - int(math.log2(bins)), 0).astype(keys.dtype)
    b = ((keys - k_lo[:, None]) >> shift[:, None]).astype(jnp.int32)
    r = rank - c_hi
    star, above, in_star = _bin_of_v(b, valid, r, bins)
    row = jnp.arange(rows, dtype=jnp.int32)[:, None]
    pick = valid & (b == star[:, None])
    pos = jnp.cumsum(pick, axis=1, dtype=jnp.int32) - 1
    gathered = jnp.full((rows, slots), -jnp.inf, buf.dtype).at[row, jnp.where(pick, pos, slots)].set(buf, mode="drop")
    desc = -jnp.sort(-gathered, axis=-1)
    v = jnp.take_along_axis(desc, jnp.clip(r - above - 1, 0, slots - 1)[:, None], axis=-1)[:, 0]
    # where each bin is one key (16-bit floats: a few keys hold every member), v is its
    # bin's value, however many members share it
    one_key = shift == 0
    v = jnp.where(one_key, _from_keys(k_lo + star.astype(keys.dtype), buf.dtype), v)
    return v, excess(buf, valid, e_hi, c_hi, hi, v), one_key | (in_star <= slots)


def finish_radix(buf, valid, c_hi, e_hi, lo, hi, rank, bins):
    """Per row (v, E(v)): v's key found ``log2(bins)`` bits at a time, from the top bit of
    key - key(lo) that the bracket spans.

    Each level bins the members still in v's bin by the next bit field (a histogram of at
    most ``bins`` bins), keeps v's bin and the rank left within it; after
    ceil(bits / log2(bins)) levels the bin is one key, v's. Exact whenever v is a member.
    """
    bits = jnp.finfo(buf.dtype).bits
    step = int(math.log2(bins))
    keys, k_lo, k_hi = _keys(buf), _keys(lo), _keys(hi)
    kt = keys.dtype
    d = keys - k_lo[:, None]  # members' keys are in [k_lo, k_hi): d in [0, span)
    width = (bits - jax.lax.clz(k_hi - k_lo)).astype(jnp.int32)  # span < 2^width
    acc = jnp.zeros_like(k_lo)  # v's bits of d above the current width
    inside, r = valid, rank - c_hi
    for _ in range(math.ceil(bits / step)):
        shift = jnp.maximum(width - step, 0)
        b = ((d >> shift[:, None].astype(kt)) - (acc << (width - shift).astype(kt))[:, None]).astype(jnp.int32)
        star, above, _ = _bin_of_v(b, inside, r, bins)
        inside = inside & (b == star[:, None])
        r = r - above
        acc = (acc << (width - shift).astype(kt)) + star.astype(kt)
        width = shift
    v = _from_keys(k_lo + acc, buf.dtype)
    return v, excess(buf, valid, e_hi, c_hi, hi, v)

"""Sample axes sharded across devices: per-shard statistics made global, exactly.

A sample array is split along its first axis over a 1-D :class:`jax.sharding.Mesh` of all
devices (axis name ``"samples"``) and processed with :func:`jax.shard_map`. Under
``jax.distributed`` (several processes, one or more hosts) the mesh spans every process's
devices and :func:`shard_samples` builds the global array from each process's own part.
Sums and counts combine with ``psum``. The CVaR of the union of the shards is exact: the
global VaR is found by bisection on the order-preserving integer keys of the floats (32 or
64 steps, each one ``psum`` of a scalar), after one local sort per shard; no sample leaves
its device. Results equal :func:`tailjax.risk.var` / :func:`tailjax.risk.cvar` on the
gathered array (the VaR bit for bit, the CVaR up to float rounding of the sums).

>>> import jax.numpy as jnp
>>> from tailjax import parallel
>>> x = parallel.shard_samples(jnp.arange(8.0))
>>> float(parallel.sharded_cvar(x, 0.25))
6.5
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from tailjax._checks import (
    check_nonempty_last_axis,
    check_open_unit,
    check_scalar,
    check_side,
    check_weights,
    is_concrete,
    traced_bad_weights,
    traced_out_of_range,
)
from tailjax.risk.empirical import tail_count

__all__ = ["sample_mesh", "shard_samples", "global_statistic", "sharded_var_cvar", "sharded_cvar"]

AXIS = "samples"


def sample_mesh(devices=None) -> Mesh:
    """A 1-D mesh named ``"samples"`` over ``devices`` (default: every device of every
    process, i.e. ``jax.devices()``)."""
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("devices must hold at least one device")
    return Mesh(np.asarray(devices), (AXIS,))


def shard_samples(x: jax.Array, mesh: Mesh | None = None) -> jax.Array:
    """The global sample array whose first axis is split over the mesh.

    ``x`` is this process's part of the sample: all of it in a single process; under
    ``jax.distributed`` each process passes its own rows (in process order), and the result
    is one global array of all of them (``jax.make_array_from_process_local_data``). The
    part's length must divide evenly over this process's devices in the mesh
    (:func:`sharded_var_cvar` pads uneven single-process samples itself with ``pad=True``).
    A scalar or empty ``x`` raises ``ValueError``.
    """
    if jnp.ndim(x) == 0 or jnp.shape(x)[0] == 0:
        raise ValueError(f"x must have a non-empty sample axis (axis 0), got shape {jnp.shape(x)}")
    mesh = mesh or sample_mesh()
    local = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)
    if local == 0:
        raise ValueError("the mesh holds none of this process's devices")
    if jnp.shape(x)[0] % local:
        raise ValueError(
            f"x has {jnp.shape(x)[0]} samples, not divisible by {local} devices "
            "(sharded_var_cvar(..., pad=True) pads with zero-weight copies)"
        )
    sharding = NamedSharding(mesh, P(AXIS))
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    return jax.make_array_from_process_local_data(sharding, np.asarray(x))


def global_statistic(
    fn: Callable[..., jax.Array], *arrays: jax.Array, mesh: Mesh | None = None, reduce: str = "sum"
) -> jax.Array:
    """Apply ``fn`` to each shard of ``arrays`` (split on axis 0) and combine the results.

    Args:
      fn: per-shard statistic, e.g. ``lambda x: jnp.sum(x > 0)``.
      arrays: arrays whose first axis is the sample axis.
      reduce: ``"sum"`` (``psum``), ``"mean"`` (``pmean``), ``"max"`` or ``"min"``.

    No array, an array without a non-empty axis 0, arrays of different lengths, or a length
    the mesh's device count does not divide raise ``ValueError`` naming ``arrays``.
    """
    if not arrays:
        raise ValueError("arrays: give at least one array to split over the mesh")
    for i, a in enumerate(arrays):
        if jnp.ndim(a) == 0 or jnp.shape(a)[0] == 0:
            raise ValueError(f"arrays[{i}] must have a non-empty sample axis (axis 0), got shape {jnp.shape(a)}")
    lengths = [jnp.shape(a)[0] for a in arrays]
    if len(set(lengths)) > 1:  # shards would pair different samples
        raise ValueError(f"arrays must share the length of their sample axis (axis 0), got {lengths}")
    reducers = {"sum": jax.lax.psum, "mean": jax.lax.pmean, "max": jax.lax.pmax, "min": jax.lax.pmin}
    if reduce not in reducers:
        raise ValueError(f"reduce must be one of {sorted(reducers)}, got {reduce!r}")
    mesh = mesh or sample_mesh()
    if lengths[0] % mesh.shape[AXIS]:
        raise ValueError(f"arrays have {lengths[0]} samples, not divisible by {mesh.shape[AXIS]} devices")

    def per_shard(*shards):
        return jax.tree_util.tree_map(lambda v: reducers[reduce](v, AXIS), fn(*shards))

    specs = tuple(P(AXIS) for _ in arrays)
    mapped = jax.shard_map(per_shard, mesh=mesh, in_specs=specs, out_specs=P(), check_vma=False)
    return mapped(*arrays)


def _key_types(dtype):
    bits = jnp.finfo(dtype).bits
    if bits == 32:
        return jnp.uint32, 32
    if bits == 64:
        return jnp.uint64, 64
    raise ValueError(f"samples must be float32 or float64, got {dtype}")


def _to_key(x):
    """Order-preserving map float -> unsigned int (for non-NaN values)."""
    utype, bits = _key_types(x.dtype)
    b = jax.lax.bitcast_convert_type(x, utype)
    sign = jnp.asarray(1 << (bits - 1), utype)
    return jnp.where(b >= sign, ~b, b | sign)


def _from_key(k, dtype):
    utype, bits = _key_types(dtype)
    sign = jnp.asarray(1 << (bits - 1), utype)
    b = jnp.where(k >= sign, k & ~sign, ~k)
    return jax.lax.bitcast_convert_type(b, dtype)


def _var_upper_shard(x, w, tail_mass):
    """Per-shard body: the global VaR (smallest v with mass(X > v) <= tail_mass)."""
    keys = _to_key(x)
    order = jnp.argsort(keys)
    ks = keys[order]
    ws = w[order]
    # above[i] = local mass of keys strictly greater than ks[i - 1] (suffix sums)
    above = jnp.concatenate([jnp.cumsum(ws[::-1])[::-1], jnp.zeros(1, ws.dtype)])

    def mass_above(k):
        return jax.lax.psum(above[jnp.searchsorted(ks, k, side="right")], AXIS)

    def ok(k):  # P(X > v) <= tail mass
        return mass_above(k) <= tail_mass

    lo = jax.lax.pmin(ks[0], AXIS)
    hi = jax.lax.pmax(ks[-1], AXIS)
    _, bits = _key_types(x.dtype)

    def body(_, bounds):
        lo, hi = bounds  # invariant: not ok(lo), ok(hi)
        mid = lo + (hi - lo) // 2
        good = ok(mid)
        active = hi - lo > 1
        return (jnp.where(active & ~good, mid, lo), jnp.where(active & good, mid, hi))

    lo_ok = ok(lo)
    _, k_star = jax.lax.fori_loop(0, bits, body, (lo, hi))
    k_star = jnp.where(lo_ok, lo, k_star)
    return _from_key(k_star, x.dtype)


def _cvar_from_var(v, x, w, tail_mass):
    """(sum_{x > v} w x + (tail - mass_{x > v}) v) / tail, summed over shards."""
    gt = x > v
    mass_gt = jax.lax.psum(jnp.sum(jnp.where(gt, w, 0)).astype(x.dtype), AXIS)
    sum_gt = jax.lax.psum(jnp.sum(jnp.where(gt, w.astype(x.dtype) * x, 0.0)), AXIS)
    return (sum_gt + (tail_mass - mass_gt) * v) / tail_mass


def _nan_if_bad(x, w, v, c):
    """NaN results when any shard holds a NaN sample of positive weight or a NaN weight."""
    bad = jax.lax.psum(jnp.sum(jnp.isnan(x) & (w != 0)) + jnp.sum(jnp.isnan(w)), AXIS) > 0
    return jnp.where(bad, jnp.nan, v), jnp.where(bad, jnp.nan, c)


def sharded_var_cvar(
    samples: jax.Array,
    tail_prob: float,
    *,
    weights: jax.Array | None = None,
    side: str = "upper",
    mesh: Mesh | None = None,
    pad: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """Exact VaR and CVaR of all shards of a 1-D sample, without gathering it.

    Same convention as :func:`tailjax.risk.var_cvar` (``tail_prob`` = tail mass, weights
    normalised over all shards). ``samples`` (and ``weights``) are split over the mesh's
    ``"samples"`` axis; pass arrays placed by :func:`shard_samples` to avoid a transfer.
    Unweighted tail masses are counted in integers, so the VaR matches the single-device
    one bit for bit at any n.

    Under ``jit``, a traced ``tail_prob`` outside (0, 1] or traced weights that are not
    finite, negative or all zero give NaN.

    ``pad=True`` accepts a length that the device count does not divide: the sample is
    padded with copies of its first value carrying zero weight, which leaves the result
    exact. NaN samples (or weights that are NaN) give NaN, as in :func:`tailjax.risk.cvar`.
    """
    check_scalar(tail_prob, "tail_prob")
    check_open_unit(tail_prob, "tail_prob", closed_right=True)
    check_side(side)
    if not isinstance(samples, jax.Array):
        samples = jnp.asarray(samples)
    check_nonempty_last_axis(samples, "samples")
    if jnp.ndim(samples) != 1:
        raise ValueError(f"samples must be 1-D, got shape {jnp.shape(samples)}")
    check_weights(weights, samples)
    if weights is not None and np.broadcast_shapes(jnp.shape(weights), samples.shape) != samples.shape:
        raise ValueError(f"weights of shape {jnp.shape(weights)} does not match samples of shape {samples.shape}")
    mesh = mesh or sample_mesh()
    n = samples.shape[0]
    extra = -n % mesh.shape[AXIS]
    if extra and pad and jax.process_count() > 1:
        raise ValueError("pad=True works in a single process; give each process an even part")
    if extra and not pad:
        raise ValueError(
            f"samples has {n} values, not divisible by {mesh.shape[AXIS]} devices "
            "(pass pad=True to pad with zero-weight copies)"
        )
    x = samples
    if not jnp.issubdtype(x.dtype, jnp.floating):  # before negating: unsigned ints wrap
        x = x.astype(jnp.result_type(float))
    x = x if side == "upper" else -x
    if weights is None:
        count = tail_count(n, tail_prob, x.dtype)
        w = jnp.ones(x.shape, jnp.int32)
        # integer masses: counts stay exact at any n
        tail_int = math.floor(count) if is_concrete(count) else jnp.floor(count).astype(jnp.int32)

        def body(x, w):
            v = _var_upper_shard(x, w, tail_int)
            return _nan_if_bad(x, w, v, _cvar_from_var(v, x, w, jnp.asarray(count, x.dtype)))

    else:
        w = jnp.broadcast_to(jnp.asarray(weights, x.dtype), x.shape)

        def body(x, w):
            tail_mass = tail_prob * jax.lax.psum(jnp.sum(w), AXIS)
            v = _var_upper_shard(x, w, tail_mass)
            return _nan_if_bad(x, w, v, _cvar_from_var(v, x, w, tail_mass))

    if extra:
        x = jnp.concatenate([x, jnp.broadcast_to(x[:1], (extra,))])
        w = jnp.concatenate([w, jnp.zeros((extra,), w.dtype)])
    invalid = traced_out_of_range(tail_prob, high_closed=True) | traced_bad_weights(weights)

    mapped = jax.shard_map(body, mesh=mesh, in_specs=(P(AXIS), P(AXIS)), out_specs=(P(), P()),
                           check_vma=False)
    v, c = mapped(x, w)
    v, c = jnp.where(invalid, jnp.nan, v), jnp.where(invalid, jnp.nan, c)
    return (v, c) if side == "upper" else (-v, -c)


def sharded_cvar(samples, tail_prob, *, weights=None, side="upper", mesh=None, pad=False):
    """Exact CVaR of all shards of a 1-D sample; see :func:`sharded_var_cvar`."""
    return sharded_var_cvar(samples, tail_prob, weights=weights, side=side, mesh=mesh, pad=pad)[1]

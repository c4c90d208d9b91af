"""Threshold counts of the subsample search in :mod:`tailjax.risk.select`: #(values >= T_j).

:func:`counts_at_least` takes one row (``values (m,)``, ``thresholds (J,)``; ``vmap`` it over
rows). With ``backend="xla"`` it is a two-level reduction of the comparisons. With
``backend="pallas"`` (GPU) or ``"interpret"`` a Pallas kernel does it: each program compares a
slice of the row (at most 8192 values, fewer where the row would give fewer than 1024
programs) against all J thresholds, a sub-slice at a time, and writes its J partial counts,
which XLA then sums. On an H100, with 8192 values a program, for batches of 100 x 2^16 and
1000 x 2^13 values, the search took 0.41-0.43 ms with the kernel against 1.6-1.9 ms with the
vmapped XLA reduction (``benchmarks/results/perf_h200/batched_sample_h100/``); on an H200,
one row of 2^20 took 13-15 us less GPU time with the kernel
(``benchmarks/results/perf_h200/variants_h200/``). ``SelectConfig.count_backend="auto"`` (the
default) takes the kernel wherever the full pass is a Pallas kernel; by default only a single
row is searched, a batch's bracket being read off its sorted subsample.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

PER_PROGRAM = 8192  # values per Pallas program, at most
MIN_PROGRAMS = 1024  # ... fewer where a row would otherwise give fewer programs than this
SUB = 256  # values compared at once against every threshold


def _xla(values, thresholds):
    rows = math.gcd(values.shape[0], 1024)
    # (rows, J, cols): the reduced axis is the contiguous one
    ge = values.reshape(rows, 1, -1) >= thresholds[None, :, None]
    return jnp.sum(jnp.sum(ge, axis=2, dtype=jnp.int32), axis=0, dtype=jnp.int32)


def _kernel(v_ref, t_ref, o_ref, *, sub):
    from jax.experimental import pallas as pl

    t = t_ref[...]

    def body(k, acc):
        v = v_ref[pl.ds(k * sub, sub)]
        return acc + jnp.sum(v[:, None] >= t[None, :], axis=0, dtype=jnp.int32)

    o_ref[...] = jax.lax.fori_loop(0, v_ref.shape[0] // sub, body, jnp.zeros(t.shape, jnp.int32))


def _pallas(values, thresholds, interpret):
    from jax.experimental import pallas as pl

    m, num = values.shape[0], thresholds.shape[0]
    per = min(PER_PROGRAM, max(m // MIN_PROGRAMS, SUB), m)
    if m % per or per & (per - 1):
        raise ValueError(f"the Pallas counts need a power-of-two row length, got {m}")
    sub = min(SUB, per)
    width = 1 << max(math.ceil(math.log2(num)), 0)  # Triton blocks are powers of two
    padded = jnp.concatenate([thresholds, jnp.full((width - num,), jnp.inf, thresholds.dtype)])
    params = None
    if not interpret:
        from jax.experimental.pallas import triton as plt

        params = plt.CompilerParams(num_warps=4)
    partial = pl.pallas_call(
        functools.partial(_kernel, sub=sub),
        grid=(m // per,),
        in_specs=[pl.BlockSpec((per,), lambda i: (i,)), pl.BlockSpec((width,), lambda i: (0,))],
        out_specs=pl.BlockSpec((None, width), lambda i: (i, 0)),
        out_shape=jax.ShapeDtypeStruct((m // per, width), jnp.int32),
        compiler_params=params,
        interpret=interpret,
    )(values, padded)
    return jnp.sum(partial, axis=0, dtype=jnp.int32)[:num]


def counts_at_least(values, thresholds, backend="xla"):
    """#(values >= T_j) for every threshold of one row; ``backend`` "xla", "pallas" or "interpret"."""
    if backend == "xla":
        return _xla(values, thresholds)
    if backend in ("pallas", "interpret"):
        return _pallas(values, thresholds.astype(values.dtype), backend == "interpret")
    raise ValueError(f"config.count_backend must be 'xla', 'pallas' or 'interpret', got {backend!r}")

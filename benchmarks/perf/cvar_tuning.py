"""Where the time of ``risk.cvar_large`` goes, and which :class:`SelectConfig` is fastest.

    python -m benchmarks.perf.cvar_tuning --size paper --out DIR   # GPU: n = 1e8, float32

Per tail probability (part ``stages``): the one-read floor (``jnp.sum``), the subsample bracket alone, the key
histogram pass alone, the compaction pass alone for each (block, warps) (each also with an
empty bracket: the pass's own read cost), each finish of the compaction buffer (the
histogram of its keys with a sort of v's bin, or a sort of the whole buffer); (part ``sweep``)
the whole ``cvar_large`` for each (method and finish, subsample size per row, bracket and its
counts, block, bracket width, ``block_slots``); then
``cvar_large`` against ``risk.cvar`` per dtype. Part ``cond`` times the whole call against
the same selection without its exactness check (the ``lax.cond`` to the sort), which on a GPU
reads its predicate back to the host unless XLA's command buffers take conditionals
(``XLA_FLAGS=--xla_gpu_enable_command_buffer=+CONDITIONAL``; run both ways). ``--rows B``
splits the n values into a batch (B, n / B) for the sweep and ``cond`` parts: the stages of the
batched workload.
Every time is the mean of back-to-back calls (``pipelined_ms``: no host sync between
calls) and the median of synced single calls (``ms``). Results are checked against a
float64 reference; a config that is not exact is reported, not hidden. float64 needs
``JAX_ENABLE_X64=1`` (run ``--parts dtypes --dtypes float64`` in a process of its own).
"""

from __future__ import annotations

import itertools
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _harness as harness
from tailjax import risk
from tailjax.risk import _bracket, select
from tailjax.risk._compact import compact
from tailjax.risk._finish import finish_histogram, finish_radix, finish_sort
from tailjax.risk._histogram import key_histogram, signed_keys

SIZES = {"paper": 100_000_000, "small": 1_000_000}


def pipelined(fn, *args, calls=50):
    """Mean seconds per call of ``calls`` back-to-back calls (one sync at the end)."""
    jax.block_until_ready(fn(*args))
    start = time.perf_counter()
    out = None
    for _ in range(calls):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / calls


def timing(fn, *args, repeats):
    synced = harness.time_call(fn, *args, repeats=repeats)
    return {"ms": 1e3 * synced["seconds"], "pipelined_ms": 1e3 * pipelined(fn, *args),
            "compile_s": synced["compile_seconds"]}, synced["output"]


def reference(x64, p):
    count = risk.tail_count(x64.size, p)
    k = math.floor(count)
    top = -np.sort(np.partition(-x64, k)[: k + 1])
    return (top[:k].sum() + (count - k) * top[k]) / count


def _stages(args, add, x2, p, rank, cfg0):
    """The bracket, the key histogram pass, the compaction pass and the finishes, each alone."""
    rows_n = x2.shape[1]
    m = _bracket.sample_size(args.rows, rows_n, cfg0)
    bracket, (lo, hi) = timing(jax.jit(lambda x: _bracket.sample_bracket(x, rank, m, cfg0)), x2,
                               repeats=args.repeats)
    key_span = int(signed_keys(hi)[0]) - int(signed_keys(lo)[0])  # <= key_bins: one value per bin
    add(stage="bracket", tail_prob=p, rows=args.rows, sample=m, key_span=key_span, **bracket)
    capacity = _bracket.default_capacity(rows_n, rank, m, cfg0)
    if "histogram" in args.methods:
        k_lo = signed_keys(lo)
        bins = cfg0.key_bins
        shift = jnp.maximum(32 - jax.lax.clz(signed_keys(hi) - k_lo) - int(math.log2(bins)), 0)
        fn = jax.jit(lambda x, lo, hi: key_histogram(x, lo, hi, k_lo, shift, cfg0.block, bins, "pallas",
                                                     cfg0.num_warps))
        try:
            t, out = timing(fn, x2, lo, hi, repeats=args.repeats)
            empty, _ = timing(fn, x2, jnp.full_like(lo, jnp.inf), jnp.full_like(hi, jnp.inf),
                              repeats=args.repeats)
            add(stage="key histogram pass", tail_prob=p, block=cfg0.block, warps=cfg0.num_warps,
                members=int(jnp.sum(out[0])), bins=bins, shift=int(shift[0]), empty_ms=empty["ms"],
                empty_pipelined_ms=empty["pipelined_ms"], **t)
        except Exception as err:  # reported, not fatal
            add(stage="key histogram pass", tail_prob=p, error=repr(err)[:200])
    for block, warps, block_slots in itertools.product(args.blocks, args.warps, _block_slots(args)):
        fn = jax.jit(lambda x, lo, hi, b=block, w=warps, s=block_slots: compact(x, lo, hi, b, capacity, "pallas", w, s))
        try:
            t, out = timing(fn, x2, lo, hi, repeats=args.repeats)
            empty, _ = timing(fn, x2, jnp.full_like(lo, jnp.inf), jnp.full_like(hi, jnp.inf), repeats=args.repeats)
        except Exception as err:  # a config Triton cannot compile is reported, not fatal
            add(stage="compact", tail_prob=p, block=block, warps=warps, block_slots=block_slots, error=repr(err)[:200])
            continue
        add(stage="compact", tail_prob=p, rows=args.rows, block=block, warps=warps, block_slots=block_slots,
            members=int(jnp.sum(out.count)), kept=bool(jnp.all(out.kept)), buffer=int(out.buf.shape[1]),
            capacity=capacity, empty_ms=empty["ms"], empty_pipelined_ms=empty["pipelined_ms"], **t)
        if (block, warps) == (cfg0.block, cfg0.num_warps):
            buf, valid, c_hi, e_hi = out.buf, out.valid, out.c_hi, out.e_hi
            slots = select._bin_slots(capacity, cfg0)
            finishes = {
                "sort": lambda buf, valid, c_hi, e_hi, lo, hi: finish_sort(buf, valid, c_hi, e_hi, hi, rank),
                "histogram": lambda *a: finish_histogram(*a, rank, slots, cfg0.bins),
                "radix": lambda *a: finish_radix(*a, rank, cfg0.bins)}
            for name in args.finishes:
                t, _ = timing(jax.jit(finishes[name]), buf, valid, c_hi, e_hi, lo, hi, repeats=args.repeats)
                add(stage=f"finish ({name})", tail_prob=p, capacity=capacity, buffer=int(buf.shape[1]),
                    block_slots=block_slots, bins=cfg0.bins, slots=slots, **t)


def _block_slots(args):
    """--block-slots as SelectConfig.block_slots values (0: None, one buffer per row)."""
    return [s or None for s in args.block_slots]


def main(argv=None):
    parser = harness.parser(__doc__, out="results/cvar_tuning")
    parser.add_argument("--tail-probs", type=float, nargs="*", default=[1e-3, 1e-2, 1e-1])
    parser.add_argument("--blocks", type=int, nargs="*", default=[1024, 2048, 4096])
    parser.add_argument("--warps", type=int, nargs="*", default=[2, 4, 8])
    parser.add_argument("--sweep-warps", action="store_true", help="the sweep also takes every --warps")
    parser.add_argument("--sample-sizes", type=int, nargs="*", default=[1 << 18, 1 << 20])
    parser.add_argument("--widths", type=float, nargs="*", default=[3.0, 5.0])
    parser.add_argument("--searches", nargs="*", default=["2x32"], help="subsample searches, ROUNDSxTHRESHOLDS")
    parser.add_argument("--finishes", nargs="*", default=["histogram", "sort"])
    parser.add_argument("--bins", type=int, nargs="*", default=[select.SelectConfig().bins],
                        help="sweep: SelectConfig.bins (the histogram and radix finishes' bins)")
    parser.add_argument("--methods", nargs="*", default=["histogram", "compact"])
    parser.add_argument("--dtypes", nargs="*", default=["float32", "bfloat16", "float64"])
    parser.add_argument("--brackets", nargs="*", default=["auto"], help="sweep: SelectConfig.bracket values")
    parser.add_argument("--count-backends", nargs="*", default=["auto"], help="sweep: SelectConfig.count_backend values")
    parser.add_argument("--block-slots", type=int, nargs="*", default=[0],
                        help="SelectConfig.block_slots values (0: one buffer per row, the default)")
    parser.add_argument("--parts", nargs="*", default=["stages", "sweep", "dtypes"])
    parser.add_argument("--rows", type=int, default=1, help="sweep, cond: split the n values into this many rows")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    n = SIZES[args.size]
    x = jax.random.normal(jax.random.PRNGKey(0), (n,), jnp.float32)
    x64 = np.asarray(x).astype(np.float64)
    rows = []

    def add(**row):
        rows.append(row)
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)

    floor, _ = timing(jax.jit(jnp.sum), x, repeats=args.repeats)
    add(stage="floor (jnp.sum)", **floor)
    rows_n = n // args.rows  # the sweep's rows: (rows, n / rows)
    x2 = x[: args.rows * rows_n].reshape(args.rows, rows_n)
    x2_64 = x64[: args.rows * rows_n].reshape(args.rows, rows_n)
    for p in args.tail_probs if {"stages", "sweep"} & set(args.parts) else []:
        ref = np.array([reference(row, p) for row in x2_64])
        rank = select._rank(rows_n, p)
        cfg0 = select.SelectConfig()
        if "stages" in args.parts:
            _stages(args, add, x2, p, rank, cfg0)
        variants = [("histogram", "histogram")] if "histogram" in args.methods else []
        variants += [("compact", f) for f in args.finishes] if "compact" in args.methods else []
        variants = variants if "sweep" in args.parts else []  # part "stages" alone: no sweep
        searches = [tuple(int(v) for v in s.split("x")) for s in args.searches]
        # the subsample per row is --sample-sizes (or n / 8), not a share of SelectConfig.sample_total
        sweep_warps = args.warps if args.sweep_warps else [cfg0.num_warps]
        for (method, finish), sample, block, warps, width, search, bracket, counts, bins, slots in itertools.product(
                variants, args.sample_sizes, args.blocks, sweep_warps, args.widths, searches, args.brackets,
                args.count_backends, args.bins, _block_slots(args)):
            cfg = cfg0._replace(method=method, finish=finish, sample_size=sample, block=block, num_warps=warps,
                                width_sd=width, sample_search=search, sample_total=sample * args.rows,
                                bracket=bracket, count_backend=counts, bins=bins, block_slots=slots)
            t, value = timing(jax.jit(lambda x, cfg=cfg: risk.cvar_large(x, p, config=cfg)), x2,
                              repeats=args.repeats)
            add(stage="cvar_large", tail_prob=p, rows=args.rows, method=method,
                finish=finish if method == "compact" else None,
                sample=_bracket.sample_size(args.rows, rows_n, cfg), search=search, bracket=bracket,
                count_backend=counts, bins=bins, block=block, warps=cfg.num_warps, width_sd=width, block_slots=slots,
                rel_err=float(np.max(np.abs(np.asarray(value, np.float64) - ref) / np.abs(ref))),
                x_floor=t["pipelined_ms"] / floor["pipelined_ms"], x_floor_synced=t["ms"] / floor["ms"], **t)
    for p in args.tail_probs if "cond" in args.parts else []:
        ref = np.array([reference(row, p) for row in x2_64])
        rank, cfg0 = select._rank(rows_n, p), select.SelectConfig()

        def unchecked(x, p=p, rank=rank):
            v, e, ok, _ = select._select(x, rank, cfg0)
            return v + e / risk.tail_count(rows_n, p), ok

        for label, fn in [("cvar_large", lambda x, p=p: (risk.cvar_large(x, p), True)), ("no check", unchecked)]:
            t, (value, ok) = timing(jax.jit(fn), x2, repeats=args.repeats)
            add(stage=f"cond: {label}", tail_prob=p, rows=args.rows, exact=bool(np.all(ok)),
                xla_flags=os.environ.get("XLA_FLAGS", ""),
                rel_err=float(np.max(np.abs(np.asarray(value, np.float64) - ref) / np.abs(ref))),
                x_floor=t["pipelined_ms"] / floor["pipelined_ms"], x_floor_synced=t["ms"] / floor["ms"], **t)
    for name in args.dtypes if "dtypes" in args.parts else []:
        dt = jnp.dtype(name)
        xd = x.astype(dt)
        xd64 = np.asarray(xd.astype(jnp.float32) if dt == jnp.bfloat16 else xd).astype(np.float64)
        floor_d, _ = timing(jax.jit(jnp.sum), xd, repeats=args.repeats)
        for p in args.tail_probs:
            ref = reference(xd64, p)
            ref_rounded = float(np.asarray(jnp.asarray(ref, dt).astype(jnp.float32)))
            for label, fn in [("cvar_large", lambda x, p=p: risk.cvar_large(x, p)),
                              ("risk.cvar", lambda x, p=p: risk.cvar(x, p))]:
                t, value = timing(jax.jit(fn), xd, repeats=args.repeats)
                add(stage=f"dtype {label}", dtype=name, tail_prob=p, floor_pipelined_ms=floor_d["pipelined_ms"],
                    floor_ms=floor_d["ms"],
                    rel_err=float(abs(float(value) - ref) / abs(ref)),
                    rel_err_vs_rounded=float(abs(float(value) - ref_rounded) / abs(ref)),
                    x_floor=t["pipelined_ms"] / floor_d["pipelined_ms"], x_floor_synced=t["ms"] / floor_d["ms"], **t)
    harness.write_json(args.out, "cvar_tuning_" + "_".join(args.parts), {"size": args.size, "n": n, "rows": rows})


if __name__ == "__main__":
    main()

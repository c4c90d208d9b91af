"""Does the key-histogram pass count on this GPU, and what does cvar_large cost with it?

    python -m benchmarks.perf.histogram_probe --out DIR     # a GPU; n = 1e8 for the timings

Part 1 runs variants of the pass's Pallas kernel on 2^20 normal values with a bracket of
known membership and reports, per variant, the members counted by jnp, by the kernel's own
mask (written to its NaN output) and by the histogram: the library's kernel; a masked add; an
add without a mask (non-members add 0 to bin 0); a masked add whose old counts feed an
output; a masked add beside a store that writes nothing; and a store of 1 instead of an add
(right only where every key is distinct). Part 2 times ``cvar_large`` with its Pallas
passes: ``method="histogram"`` (the last variant whose histogram is exact, if any) and
``method="compact"``, against the one-read floor at n = 1e8, float32 and bfloat16, each
checked against a float64 reference and with whether the selection held (``selected``) or
fell back to a sort.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _harness as harness
from benchmarks.perf.cvar_tuning import reference, timing
from tailjax import risk
from tailjax.risk import _histogram as H
from tailjax.risk import select


def _members(x_ref, bounds_ref, keys_ref, hist_ref):
    """The block's values, hi, bracket mask, counted mask, bins (0 where not counted), ones."""
    xs = x_ref[...]
    lo, hi = bounds_ref[0], bounds_ref[1]
    member = (xs >= lo) & (xs < hi)
    b = H.bin_of(xs, keys_ref[0], keys_ref[1])
    counted = member & (b >= 0) & (b < hist_ref.shape[0])
    return xs, hi, member, counted, jnp.where(counted, b, 0), counted.astype(jnp.int32)


def _diag_kernel(x_ref, bounds_ref, keys_ref, hist_in, hist_ref, above_ref, excess_ref, nan_ref, *, interpret,
                 mode):
    from jax.experimental.pallas import triton as plt

    del hist_in, interpret
    xs, hi, member, counted, b, ones = _members(x_ref, bounds_ref, keys_ref, hist_ref)
    live = 0.0
    if mode == "masked":
        plt.atomic_add(hist_ref, (b,), ones, mask=counted)
    elif mode == "unmasked":
        plt.atomic_add(hist_ref, (b,), ones)
    elif mode == "masked, result used":  # the old counts feed an output (never < 0)
        live = jnp.sum(jnp.where(counted & (plt.atomic_add(hist_ref, (b,), ones, mask=counted) < 0), 1.0, 0.0))
    elif mode == "masked, with a store":  # and a store into the histogram that writes nothing
        plt.atomic_add(hist_ref, (b,), ones, mask=counted)
        plt.store(hist_ref.at[b], ones, mask=counted & (xs != xs))
    else:  # "store"
        plt.store(hist_ref.at[b], ones, mask=counted)
    above_ref[0] = jnp.sum(member, dtype=jnp.int32)
    excess_ref[0] = jnp.sum(jnp.where(xs > hi, xs - hi, 0.0)) + live
    nan_ref[0] = jnp.sum(ones, dtype=jnp.int32)


def _plain_kernel(x_ref, bounds_ref, keys_ref, hist_in, hist_ref, above_ref, excess_ref, nan_ref, *,
                  interpret, mode):
    """The pass with its outputs as the library's; ``mode``: "used" (the masked add's old
    counts feed the NaN count, adding 0), "store" (a masked add and a store into the
    histogram that writes nothing) or "unmasked"."""
    from jax.experimental.pallas import triton as plt

    del hist_in, interpret
    xs, hi, member, counted, b, ones = _members(x_ref, bounds_ref, keys_ref, hist_ref)
    live = 0
    if mode == "used":
        live = jnp.sum(counted & (plt.atomic_add(hist_ref, (b,), ones, mask=counted) < 0), dtype=jnp.int32)
    elif mode == "store":
        plt.atomic_add(hist_ref, (b,), ones, mask=counted)
        plt.store(hist_ref.at[b], ones, mask=counted & (xs != xs))
    else:
        plt.atomic_add(hist_ref, (b,), ones)
    above_ref[0] = jnp.sum(xs >= hi, dtype=jnp.int32)
    excess_ref[0] = jnp.sum(jnp.where(xs > hi, xs.astype(excess_ref.dtype) - hi.astype(excess_ref.dtype), 0.0))
    nan_ref[0] = jnp.sum(xs != xs, dtype=jnp.int32) + live


def counting(add, backend):
    """Part 1; returns the exact kernels among those writing the library's outputs."""
    import functools

    n, bins, block = 1 << 20, 1 << 20, 2048
    x = jax.random.normal(jax.random.PRNGKey(1), (1, n), jnp.float32)
    lo, hi = jnp.asarray([2.0], jnp.float32), jnp.asarray([2.1], jnp.float32)
    k_lo, span = H.signed_keys(lo), H.signed_keys(hi) - H.signed_keys(lo)
    shift = jnp.maximum(32 - jax.lax.clz(span) - int(math.log2(bins)), 0)
    expected = int(jnp.sum((x >= lo) & (x < hi)))
    distinct = int(jnp.unique(x[(x >= lo) & (x < hi)]).size)
    exact = []
    original = H._kernel
    variants = [("current", original)] + [(m, functools.partial(_diag_kernel, mode=m))
                                          for m in ("masked", "unmasked", "masked, result used",
                                                    "masked, with a store", "store")]
    variants += [(f"{name}, plain outputs", functools.partial(_plain_kernel, mode=mode)) for name, mode in
                 [("unmasked", "unmasked"), ("masked, with a store", "store"), ("masked, result used", "used")]]
    for name, kernel in variants:
        H._kernel = kernel
        try:
            hist, c2, _, c3 = jax.jit(lambda x: H.key_histogram(x, lo, hi, k_lo, shift, block, bins, backend))(x)
            row = dict(variant=name, members=expected, distinct_members=distinct, hist_sum=int(jnp.sum(hist)),
                       shift=int(shift[0]), in_kernel_count=int(c3[0]), second_count=int(c2[0]))
            row["hist_exact"] = row["hist_sum"] == expected
            if row["hist_exact"] and (name == "current" or "plain outputs" in name):
                exact.append((name, kernel))
        except Exception as err:  # reported, not fatal
            row = dict(variant=name, error=repr(err)[:300])
        add(part="count", **row)
    H._kernel = original
    return exact


def main(argv=None):
    parser = harness.parser(__doc__, out="results/histogram_probe")
    parser.add_argument("--n", type=int, default=100_000_000)
    parser.add_argument("--tail-probs", type=float, nargs="*", default=[1e-3, 1e-2, 1e-1])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--dtypes", nargs="*", default=["float32", "bfloat16"])
    parser.add_argument("--methods", nargs="*", default=["compact", "histogram"])
    parser.add_argument("--backend", default="pallas", help="pallas (GPU) or interpret (a CPU smoke run)")
    args = parser.parse_args(argv)
    rows = []

    def add(**row):
        rows.append(row)
        print(row, flush=True)
        harness.write_json(args.out, "histogram_probe", {"n": args.n, "rows": rows})  # kept if cut short

    add(part="device", device=str(jax.devices()[0]), jax=jax.__version__)
    exact = counting(add, args.backend)
    methods = [("compact", None)] if "compact" in args.methods else []
    methods += [(f"histogram ({name})", kernel) for name, kernel in exact[-1:]]
    original = H._kernel
    for dtype in args.dtypes:
        x = jax.random.normal(jax.random.PRNGKey(0), (args.n,), jnp.float32).astype(dtype)
        x64 = np.asarray(x.astype(jnp.float32)).astype(np.float64)
        floor, _ = timing(jax.jit(jnp.sum), x, repeats=args.repeats)
        add(part="time", dtype=dtype, method="floor (jnp.sum)", **floor)
        for p in args.tail_probs:
            ref = reference(x64, p)
            for method, kernel in methods:
                H._kernel = kernel or original
                cfg = select.SelectConfig(method="compact" if kernel is None else "histogram",
                                          backend="pallas" if args.backend == "pallas" else "xla")
                # ok False: the selection missed and cvar_large fell back to a sort
                ok = jax.jit(lambda x, c=cfg, p=p: select._select(x[None], select._rank(x.size, p), c)[2])(x)
                t, out = timing(jax.jit(lambda x, c=cfg, p=p: risk.cvar_large(x, p, config=c)), x,
                                repeats=args.repeats)
                add(part="time", dtype=dtype, method=method, tail_prob=p, selected=bool(ok[0]),
                    rel_err=abs(float(out) - ref) / abs(ref), x_floor=t["ms"] / floor["ms"],
                    x_floor_pipelined=t["pipelined_ms"] / floor["pipelined_ms"], **t)
    H._kernel = original


if __name__ == "__main__":
    main()

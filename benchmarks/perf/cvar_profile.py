"""Where one call of ``risk.cvar_large`` spends its GPU time, kernel by kernel (issue 19).

    python -m benchmarks.perf.cvar_profile --size paper --out DIR

For the one-read floor (``jnp.sum``) and, per tail probability, bracket-count backend and
``--block-slots``, ``cvar_large`` on one row, ``--calls`` synced calls run under
``jax.profiler``. The device plane's kernel events are grouped by name: each kernel's time
per call, the kernels per call, and the GPU-busy time per call against the synced wall time
per call (the difference is launch latency, the exactness check's read-back to the host and
idle gaps).

``--configs name:field=value,...`` profiles named ``SelectConfig``s instead (e.g.
``single:sample_run=1``; ``default:`` is the default); each row then also holds the relative
error against the float64 CVaR, whether the selection held (no fallback), and the synced wall
time without the profiler, its ``--rounds`` calls interleaved with the floor's and the other
configurations' so that they share the machine's drift.
"""

from __future__ import annotations

import collections
import glob
import itertools
import pathlib
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _harness as harness
from benchmarks.perf.cvar_tuning import reference
from tailjax import risk
from tailjax.risk import select

SIZES = {"paper": 100_000_000, "small": 1_000_000}


def kernel_events(trace_dir):
    """(name, duration ns) of every event on the device planes' stream lines, and the names
    of every device plane's lines (what the trace held, should no line be a stream)."""
    from jax.profiler import ProfileData

    paths = sorted(glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True))
    if not paths:
        return [], []
    events, lines = [], []
    for plane in ProfileData.from_file(paths[-1]).planes:
        if not plane.name.startswith("/device:"):
            continue
        for line in plane.lines:
            lines.append(f"{plane.name} {line.name}")
            if line.name.startswith("Stream"):
                events += [(e.name, e.duration_ns) for e in line.events]
    return events, lines


def profile(fn, x, calls):
    """Synced wall ms per call (median) and the kernels' time per call, by kernel name."""
    jax.block_until_ready(fn(x))
    walls = []
    with tempfile.TemporaryDirectory() as trace_dir:
        jax.profiler.start_trace(trace_dir)
        for _ in range(calls):
            start = time.perf_counter()
            jax.block_until_ready(fn(x))
            walls.append(time.perf_counter() - start)
        jax.profiler.stop_trace()
        events, lines = kernel_events(trace_dir)
    per_kernel = collections.defaultdict(lambda: [0, 0.0])
    for name, ns in events:
        per_kernel[name][0] += 1
        per_kernel[name][1] += ns
    kernels = sorted(({"kernel": k, "per_call": n / calls, "us_per_call": ns / 1e3 / calls}
                      for k, (n, ns) in per_kernel.items()), key=lambda r: -r["us_per_call"])
    return {"wall_ms": 1e3 * float(np.median(walls)), "busy_ms": sum(r["us_per_call"] for r in kernels) / 1e3,
            "kernels_per_call": len(events) / calls, "kernels": kernels, "device_lines": sorted(set(lines))}


def parse_config(spec):
    """``name:field=value,...`` -> (name, SelectConfig); values are ints, floats, None or strings."""
    name, _, fields = spec.partition(":")
    kwargs = {}
    for item in filter(None, fields.split(",")):
        key, value = item.split("=")
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                pass
        kwargs[key] = None if value == "None" else value
    return name, select.SelectConfig(**kwargs)


def interleaved_walls(fns, x, rounds):
    """Median synced wall ms of each fn, calling them in turn ``rounds`` times."""
    times = [[] for _ in fns]
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            jax.block_until_ready(fn(x))
            times[i].append(time.perf_counter() - start)
    return [1e3 * float(np.median(t)) for t in times]


def main(argv=None):
    parser = harness.parser(__doc__, out="results/cvar_profile")
    parser.add_argument("--tail-probs", type=float, nargs="*", default=[1e-3, 1e-2, 1e-1])
    parser.add_argument("--count-backends", nargs="*", default=["auto"])
    parser.add_argument("--block-slots", type=int, nargs="*", default=[0],
                        help="SelectConfig.block_slots values (0: one buffer per row, the default)")
    parser.add_argument("--configs", nargs="*", default=None, metavar="NAME:FIELD=VALUE,...",
                        help="named SelectConfigs to profile instead of counts x block slots")
    parser.add_argument("--rounds", type=int, default=30, help="interleaved synced calls (with --configs)")
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--top", type=int, default=12, help="kernels printed per profile")
    parser.add_argument("--n", type=int, default=None, help="values in the row (default: the size's)")
    args = parser.parse_args(argv)
    x = jax.random.normal(jax.random.PRNGKey(0), (args.n or SIZES[args.size],), jnp.float32)
    rows = []

    def add(label, **fields):
        row = dict(label=label, **fields)
        rows.append(row)
        extra = (f", synced {row['synced_ms']:.3f} ms (floor {row['floor_synced_ms']:.3f}), held {row['held']}, "
                 f"error {row['relative_error']:.1e}") if "synced_ms" in row else ""
        print(f"{label}: wall {row['wall_ms']:.3f} ms, kernels busy {row['busy_ms']:.3f} ms, "
              f"{row['kernels_per_call']:.1f} kernels a call{extra}", flush=True)
        for k in row["kernels"][: args.top]:
            print(f"    {k['us_per_call']:8.1f} us  x{k['per_call']:.0f}  {k['kernel'][:90]}", flush=True)

    floor = jax.jit(jnp.sum)
    add("floor (jnp.sum)", **profile(floor, x, args.calls))
    x64 = np.asarray(x, np.float64) if args.configs is not None else None
    for p in args.tail_probs if args.configs is not None else []:
        want, named = reference(x64, p), [parse_config(spec) for spec in args.configs]
        fns = [jax.jit(lambda x, p=p, cfg=cfg: risk.cvar_large(x, p, config=cfg)) for _, cfg in named]
        walls = interleaved_walls([floor, *fns], x, args.rounds)
        for (name, cfg), fn, wall in zip(named, fns, walls[1:]):
            held = bool(jnp.all(jax.jit(lambda x, cfg=cfg: select._select(
                x[None], select._rank(x.size, p), cfg)[2])(x)))
            error = abs(float(fn(x)) - want) / abs(want)
            add(f"cvar_large tail {p:g}, {name}", tail_prob=p, config=cfg._asdict(), held=held,
                relative_error=error, synced_ms=wall, floor_synced_ms=walls[0], **profile(fn, x, args.calls))
    for p in args.tail_probs if args.configs is None else []:
        for counts, slots in itertools.product(args.count_backends, args.block_slots):
            cfg = select.SelectConfig(count_backend=counts, block_slots=slots or None)
            fn = jax.jit(lambda x, p=p, cfg=cfg: risk.cvar_large(x, p, config=cfg))
            add(f"cvar_large tail {p:g}, counts {counts}, block_slots {slots or None}", tail_prob=p,
                count_backend=counts, block_slots=slots or None, **profile(fn, x, args.calls))
    harness.write_json(pathlib.Path(args.out), "cvar_profile",
                       {"size": args.size, "n": int(x.shape[0]), "calls": args.calls, "rows": rows})


if __name__ == "__main__":
    main()

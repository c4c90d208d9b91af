"""CVaR of one large float32 sample: tailjax's selection against full sorts/top-k, and its
scaling with n.

    python -m benchmarks.perf.cvar_large --size paper             # GPU: n = 1e8
    python -m benchmarks.perf.cvar_large --size paper --scaling   # GPU: n = 1e4 ... 1e9
    python -m benchmarks.perf.cvar_large --size small             # CPU: n = 1e6

Side by side in one run: ``tailjax.risk.cvar_large`` (bracketed selection, no full sort; its
default compaction pass and the key-histogram pass),
``tailjax.risk.cvar`` (``lax.top_k`` of the tail, or a sort), ``jnp.sort``, ``lax.top_k``
and ``torch.topk`` (if torch is installed), each finished into the same CVaR, and one read
of the array (``jnp.sum``) as the bandwidth floor. Reports the median of repeated timings,
ratios to the floor, and the error of each result against a float64 reference.
"""

from __future__ import annotations

import math
import sys

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _harness as harness
from tailjax import risk
from tailjax.risk import SelectConfig

SIZES = {"small": 1_000_000, "paper": 100_000_000}
HISTOGRAM = SelectConfig(method="histogram")  # the key-histogram pass (an XLA scatter) instead of compaction
SCALING = {"small": [10**k for k in range(4, 7)], "paper": [10**k for k in range(4, 10)]}


def _from_top(top_desc, n, tail_prob):
    """CVaR from the (k + 1) largest values, sorted descending."""
    count = risk.tail_count(n, tail_prob)
    k = math.floor(count)
    return (jnp.sum(top_desc[:k]) + (count - k) * top_desc[k]) / count


def torch_cvar(x_np, tail_prob, repeats, dtype="float32"):
    """``(seconds, value, label)`` of the CVaR along the last axis by ``torch.topk`` (on the
    GPU when JAX runs there) of ``x_np`` cast to ``dtype``, or None without torch."""
    try:
        import torch
    except ImportError:
        return None
    on_gpu = jax.default_backend() == "gpu"
    if on_gpu and not torch.cuda.is_available():
        return None
    dev = "cuda" if on_gpu else "cpu"
    xt = torch.from_numpy(x_np).to(dev, getattr(torch, dtype))
    n = xt.shape[-1]
    count = risk.tail_count(n, tail_prob)
    k = math.floor(count)

    def run():
        top = torch.topk(xt, k + 1, dim=-1, sorted=True).values
        return (top[..., :k].sum(-1) + (count - k) * top[..., k]) / count

    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    t = harness.time_call(run, repeats=repeats, block=lambda out: (sync(), out)[1])
    return t["seconds"], np.asarray(t["output"].float().cpu()), f"torch.topk ({dev})"


def measure(n, tail_probs, repeats, *, with_sort=True):
    """Rows for one n: every method at every tail probability, with the floor."""
    x = jax.random.normal(jax.random.PRNGKey(0), (n,), jnp.float32)
    x_np = np.asarray(x)
    desc64 = np.sort(x_np.astype(np.float64))[::-1]
    floor = harness.time_call(jax.jit(jnp.sum), x, repeats=repeats)["seconds"]
    rows = []
    for p in tail_probs:
        count = risk.tail_count(n, p)
        k = math.floor(count)
        ref = (desc64[:k].sum() + (count - k) * desc64[k]) / count
        methods = {
            "tailjax.cvar_large": jax.jit(lambda x, p=p: risk.cvar_large(x, p)),
            "tailjax.cvar_large (key histogram, XLA scatter)": jax.jit(
                lambda x, p=p: risk.cvar_large(x, p, config=HISTOGRAM)),
            "tailjax.cvar": jax.jit(lambda x, p=p: risk.cvar(x, p)),
            "lax.top_k": jax.jit(lambda x, p=p, k=k: _from_top(jax.lax.top_k(x, k + 1)[0], n, p)),
        }
        if with_sort:
            methods["jnp.sort"] = jax.jit(lambda x, p=p: _from_top(-jnp.sort(-x), n, p))
        results = {}
        for name, fn in methods.items():
            t = harness.time_call(fn, x, repeats=repeats)
            results[name] = (t["seconds"], float(t["output"]))
        torch_row = torch_cvar(x_np, p, repeats)
        if torch_row is not None:
            results[torch_row[2]] = (torch_row[0], float(torch_row[1]))
        for name, (seconds, value) in results.items():
            rows.append({"n": n, "tail_prob": p, "method": name, "ms": 1e3 * seconds,
                         "floor_ms": 1e3 * floor, "x_floor": seconds / floor,
                         "rel_err": abs(value - ref) / abs(ref)})
    return rows


def main(argv=None):
    parser = harness.parser(__doc__, out="results/cvar_large")
    parser.add_argument("--tail-probs", type=float, nargs="*", default=[0.01, 0.001, 0.1])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--scaling", action="store_true", help="time against n instead")
    args = parser.parse_args(argv)
    if args.scaling:
        rows = []
        for n in SCALING[args.size]:
            rows += measure(n, args.tail_probs[:1], args.repeats, with_sort=n <= 10**9 // 2)
            print(f"n={n:.0e} done", flush=True)
        name = "cvar_scaling"
    else:
        rows = measure(SIZES[args.size], args.tail_probs, args.repeats)
        name = "cvar_large"
    harness.write_json(args.out, name, {"size": args.size, "repeats": args.repeats, "rows": rows})
    print(harness.markdown_table(rows, ["n", "tail_prob", "method", "ms", "x_floor", "rel_err"],
                                 {"ms": ".3f", "x_floor": ".2f", "rel_err": ".1e"}))
    fig, ax = harness.figure(figsize=(7, 4))
    if args.scaling:
        for m in dict.fromkeys(r["method"] for r in rows):
            pts = [(r["n"], r["ms"]) for r in rows if r["method"] == m]
            ax.loglog(*zip(*pts), marker="o", label=m)
        ns = sorted({r["n"] for r in rows})
        ax.loglog(ns, [next(r["floor_ms"] for r in rows if r["n"] == n) for n in ns], "k--",
                  label="one read (floor)")
        ax.set_xlabel("n")
        ax.set_title(f"CVaR at tail_prob={args.tail_probs[0]:g}")
    else:
        methods = list(dict.fromkeys(r["method"] for r in rows))
        width = 0.8 / len(args.tail_probs)
        for i, p in enumerate(args.tail_probs):
            ms = [next(r["ms"] for r in rows if r["method"] == m and r["tail_prob"] == p) for m in methods]
            ax.bar(np.arange(len(methods)) + i * width, ms, width, label=f"tail_prob={p:g}")
        ax.axhline(rows[0]["floor_ms"], color="k", ls="--", lw=1, label="one read of the array")
        ax.set_xticks(np.arange(len(methods)) + width * (len(args.tail_probs) - 1) / 2)
        ax.set_xticklabels(methods, rotation=15, fontsize=8)
        ax.set_yscale("log")
        ax.set_title(f"CVaR of n={rows[0]['n']:.0e} float32")
    ax.set_ylabel("ms (median)")
    ax.legend(fontsize=8)
    harness.save_figure(fig, args.out, name)
    return rows


if __name__ == "__main__":
    sys.exit(main() and 0)

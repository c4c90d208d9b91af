"""CVaR of 10^8 float32 samples on one GPU: tailjax's selection against full sorts/top-k.

    python -m benchmarks.perf.cvar_large --size paper   # GPU: n = 1e8
    python -m benchmarks.perf.cvar_large --size small   # CPU: n = 1e6

Side by side in one run: ``tailjax.risk.cvar_large`` (bracketed selection, no full sort),
``tailjax.risk.cvar`` (``jnp.sort``), ``jax.lax.top_k`` and ``torch.topk`` (if torch is
installed), each finished into the same CVaR, and one read of the array (``jnp.sum``) as the
bandwidth floor. Reports the median of repeated timings, ratios, and the error of each
result against a float64 reference computed on the host.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from tailjax import risk
from tailjax.risk.empirical import tail_count

SIZES = {"small": 1_000_000, "paper": 100_000_000}


def _time(fn, *args, repeats):
    out = fn(*args)
    jax.block_until_ready(out)  # compile + warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def _cvar_from_top(top_desc, n, tail_prob):
    """CVaR from the (k+1) largest values, sorted descending."""
    count = tail_count(n, tail_prob)
    k = math.floor(count)
    return (jnp.sum(top_desc[:k]) + (count - k) * top_desc[k]) / count


def _torch_row(x_np, tail_prob, repeats):
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available() and jax.default_backend() == "gpu":
        return None
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    xt = torch.from_numpy(x_np).to(dev)
    n = xt.shape[0]
    count = tail_count(n, tail_prob)
    k = math.floor(count)

    def run():
        top = torch.topk(xt, k + 1, sorted=True).values
        return (top[:k].sum() + (count - k) * top[k]) / count

    run()
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        value = run()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), float(value.item()), dev


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=list(SIZES), default="small")
    parser.add_argument("--tail-probs", type=float, nargs="*", default=[0.01, 0.001])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default="results/cvar_large")
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    n = SIZES[args.size]
    device = jax.devices()[0]
    x = jax.random.normal(jax.random.PRNGKey(0), (n,), jnp.float32)
    x_np = np.asarray(x)
    x64_sorted = np.sort(x_np.astype(np.float64))[::-1]
    rows = []
    read_s, _ = _time(jax.jit(jnp.sum), x, repeats=args.repeats)
    for p in args.tail_probs:
        count = tail_count(n, p)
        k = math.floor(count)
        ref = (x64_sorted[:k].sum() + (count - k) * x64_sorted[k]) / count
        candidates = {
            "tailjax.cvar_large": jax.jit(lambda x, p=p: risk.cvar_large(x, p)),
            "jnp.sort (tailjax.cvar)": jax.jit(lambda x, p=p: risk.cvar(x, p)),
            "jax.lax.top_k": jax.jit(
                lambda x, p=p, k=k: _cvar_from_top(jax.lax.top_k(x, k + 1)[0], n, p)
            ),
        }
        for name, fn in candidates.items():
            seconds, value = _time(fn, x, repeats=args.repeats)
            rows.append(dict(method=name, tail_prob=p, ms=1e3 * seconds, value=float(value),
                             rel_err=abs(float(value) - ref) / abs(ref)))
        torch_row = _torch_row(x_np, p, args.repeats)
        if torch_row is not None:
            seconds, value, dev = torch_row
            rows.append(dict(method=f"torch.topk ({dev})", tail_prob=p, ms=1e3 * seconds,
                             value=value, rel_err=abs(value - ref) / abs(ref)))
    base = {p: next(r["ms"] for r in rows if r["method"] == "tailjax.cvar_large" and r["tail_prob"] == p)
            for p in args.tail_probs}
    for r in rows:
        r["ratio_to_tailjax"] = r["ms"] / base[r["tail_prob"]]
    result = dict(n=n, device=device.device_kind, platform=device.platform,
                  read_once_ms=1e3 * read_s, repeats=args.repeats, rows=rows)
    (out / "cvar_large.json").write_text(json.dumps(result, indent=2))
    _plot(rows, args.tail_probs, result, out / "cvar_large.png")

    print(f"CVaR of n={n:.0e} float32 samples on {device.device_kind} "
          f"(median of {args.repeats}); one read of the array: {1e3 * read_s:.3f} ms")
    print(f"{'method':28s} {'tail':>7s} {'ms':>9s} {'x tailjax':>10s} {'rel. err':>10s}")
    for r in rows:
        print(f"{r['method']:28s} {r['tail_prob']:7.0e} {r['ms']:9.3f} "
              f"{r['ratio_to_tailjax']:10.2f} {r['rel_err']:10.1e}")
    return result


def _plot(rows, tail_probs, result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(tail_probs)
    for i, p in enumerate(tail_probs):
        ms = [next(r["ms"] for r in rows if r["method"] == m and r["tail_prob"] == p) for m in methods]
        ax.bar(np.arange(len(methods)) + i * width, ms, width, label=f"tail_prob={p:g}")
    ax.axhline(result["read_once_ms"], color="k", ls="--", lw=1, label="one read of the array")
    ax.set_xticks(np.arange(len(methods)) + width * (len(tail_probs) - 1) / 2)
    ax.set_xticklabels(methods, rotation=15, fontsize=8)
    ax.set_ylabel("ms (median)")
    ax.set_title(f"CVaR of n={result['n']:.0e} float32 on {result['device']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()

"""Many CVaRs of moderate size at once: ``risk.cvar`` over a batch axis, (B, n) float32
(or ``--dtype bfloat16``).

    python -m benchmarks.perf.cvar_batched --size paper   # GPU: 1e4 x 1e3, 1e3 x 1e5, 1e2 x 1e6
    python -m benchmarks.perf.cvar_batched --size small   # CPU: a tenth of each row count

The workload every family runs (a Gen-DFL decision, an IS oracle call, a TFFT Stage 1 is a
batch of CVaRs). Side by side in one run: ``tailjax.risk.cvar_large`` (per-row bracketed
selection on GPU, one pass over the batch; rows of at most 2^14 values by a bitwise key search in
registers on GPU, ``lax.top_k`` elsewhere),
``tailjax.risk.cvar`` (it selects the top
floor(n p) + 2 values with ``lax.top_k`` when they are at most an eighth of a row, else
sorts), a full ``jnp.sort``, ``lax.top_k`` of the same k, ``torch.topk`` when torch is
installed (on the GPU when JAX runs there), and one read of the array (``jnp.sum``) as the
floor. Each result is checked against a float64 reference on the host.
"""

from __future__ import annotations

import math
import sys

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _harness as harness
from benchmarks.perf.cvar_large import torch_cvar
from tailjax import risk
from tailjax.risk import SelectConfig

SHAPES = {
    "paper": [(10_000, 1_000), (1_000, 100_000), (100, 1_000_000)],
    "small": [(1_000, 1_000), (100, 10_000), (10, 100_000)],
}


def _reference(x64, tail_prob):
    n = x64.shape[1]
    count = risk.tail_count(n, tail_prob)
    k = math.floor(count)
    top = -np.sort(np.partition(-x64, k, axis=1)[:, : k + 1], axis=1)
    return (top[:, :k].sum(1) + (count - k) * top[:, k]) / count


def _from_top(top, n, tail_prob):
    count = risk.tail_count(n, tail_prob)
    k = math.floor(count)
    return (jnp.sum(top[:, :k], axis=1) + (count - k) * top[:, k]) / count


def main(argv=None):
    parser = harness.parser(__doc__, out="results/cvar_batched")
    parser.add_argument("--tail-probs", type=float, nargs="*", default=[0.001, 0.01, 0.1])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--shapes", nargs="*", help="BxN shapes instead of the size's, e.g. 100x1000000")
    parser.add_argument("--methods", nargs="*", help="only these columns (e.g. tailjax.cvar_large torch.topk)")
    parser.add_argument("--brackets", nargs="*", default=[],
                        help="also cvar_large with each of these SelectConfig.bracket values")
    parser.add_argument("--shorts", nargs="*", default=[],
                        help="also cvar_large with each of these SelectConfig.short values (rows under min_size)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                        help="the samples' dtype (every column reads the same values; the reference is float64)")
    args = parser.parse_args(argv)
    wanted = lambda name: not args.methods or any(name.startswith(m) for m in args.methods)
    shape_list = [tuple(int(v) for v in s.split("x")) for s in args.shapes] if args.shapes else SHAPES[args.size]
    rows = []
    for batch, n in shape_list:
        x = jax.random.normal(jax.random.PRNGKey(0), (batch, n), jnp.float32).astype(args.dtype)
        x_np = np.asarray(x.astype(jnp.float32))  # exact: every bfloat16 is a float32
        x64 = x_np.astype(np.float64)
        # one read, as a flat sum: summed as (1000, 1e5) it read 4x slower on an H100 (batched_auto_h100)
        floor = harness.time_call(jax.jit(lambda x: jnp.sum(x.reshape(-1))), x, repeats=args.repeats)["seconds"]
        for p in args.tail_probs:
            ref = _reference(x64, p)
            k = math.floor(risk.tail_count(n, p)) + 2  # through the atom after the VaR
            candidates = {
                "tailjax.cvar_large": jax.jit(lambda x, p=p: risk.cvar_large(x, p)),
                "tailjax.risk.cvar": jax.jit(lambda x, p=p: risk.cvar(x, p)),
                "jnp.sort": jax.jit(lambda x, p=p: _from_top(-jnp.sort(-x, axis=1), n, p)),
                "lax.top_k": jax.jit(lambda x, p=p, k=k: _from_top(jax.lax.top_k(x, k)[0], n, p)),
            }
            candidates.update({f"tailjax.cvar_large (bracket={b})": jax.jit(
                lambda x, p=p, cfg=SelectConfig(bracket=b): risk.cvar_large(x, p, config=cfg))
                for b in args.brackets})
            candidates.update({f"tailjax.cvar_large (short={v})": jax.jit(
                lambda x, p=p, cfg=SelectConfig(short=v): risk.cvar_large(x, p, config=cfg))
                for v in args.shorts})
            timings = {name: harness.time_call(fn, x, repeats=args.repeats) for name, fn in candidates.items()
                       if wanted(name)}
            results = {name: (t["seconds"], np.asarray(t["output"], np.float64)) for name, t in timings.items()}
            torch_result = torch_cvar(x_np, p, args.repeats, args.dtype) if wanted("torch.topk") else None
            if torch_result is not None:
                results[torch_result[2]] = torch_result[:2]
            for name, (seconds, value) in results.items():
                rows.append({
                    "shape": f"{batch}x{n}", "tail_prob": p, "method": name, "ms": 1e3 * seconds,
                    "x_floor": seconds / floor, "floor_ms": 1e3 * floor,
                    "max_rel_err": float(np.max(np.abs(value - ref) / np.maximum(np.abs(ref), 1e-12))),
                })
            print(f"{batch}x{n} p={p}: " + ", ".join(f"{r['method']} {r['ms']:.3f} ms" for r in rows[-len(results):]),
                  flush=True)
            harness.write_json(args.out, "cvar_batched", {"size": args.size, "repeats": args.repeats,
                                                          "dtype": args.dtype, "rows": rows})
    print(harness.markdown_table(rows, ["shape", "tail_prob", "method", "ms", "x_floor", "max_rel_err"],
                                 {"ms": ".3f", "x_floor": ".1f", "max_rel_err": ".1e"}))
    fig, axes = harness.figure(1, len(args.tail_probs), figsize=(5 * len(args.tail_probs), 3.5), squeeze=False)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    for ax, p in zip(axes[0], args.tail_probs):
        for j, m in enumerate(methods):
            ms = [next((r["ms"] for r in rows if r["method"] == m and r["shape"] == s and r["tail_prob"] == p), np.nan)
                  for s in shapes]
            ax.bar(np.arange(len(shapes)) + j * 0.8 / len(methods), ms, 0.8 / len(methods), label=m)
        floors = [next(r["floor_ms"] for r in rows if r["shape"] == s) for s in shapes]
        ax.scatter(np.arange(len(shapes)) + 0.3, floors, color="k", marker="_", s=400, label="one read")
        ax.set_xticks(np.arange(len(shapes)) + 0.3)
        ax.set_xticklabels(shapes)
        ax.set_yscale("log")
        ax.set_ylabel("ms (median)")
        ax.set_title(f"batched CVaR, tail_prob={p:g}")
        ax.legend(fontsize=7)
    harness.save_figure(fig, args.out, "cvar_batched")
    return rows


if __name__ == "__main__":
    sys.exit(main() and 0)

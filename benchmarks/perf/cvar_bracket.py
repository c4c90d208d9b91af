"""Where the subsample bracket of ``risk.cvar_large`` spends its time, per batch shape.

    python -m benchmarks.perf.cvar_bracket --size paper --out DIR   # GPU: 1 x 1e8, 100 x 1e6, 1000 x 1e5

For each shape (B, n) float32 and tail probability: the gather of the per-row subsample
alone, the whole bracket as the library computes it (``bracket="search"``: rounds of
threshold counts, each count laid out as the library's two-level reduction), the same
search with the counts laid out as one reduction over the sample (``counts: (m, J)`` summed
over m, or ``(J, m)`` summed over m), the search with the Pallas count kernel
(``count_backend="pallas"``, GPU), the bracket read off the sorted subsample
(``bracket="sort"``), and the whole ``cvar_large`` with each of these brackets
(``--variants`` keeps those whose names contain one of the given strings). Every time is
the mean of back-to-back calls (``pipelined_ms``) and the median of synced calls (``ms``);
each bracket's width is reported as the number of values it holds, and each ``cvar_large``
result is checked against a float64 reference.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _harness as harness
from benchmarks.perf.cvar_tuning import reference, timing
from tailjax import risk
from tailjax.risk import _bracket, _counts, select

SHAPES = {"paper": [(100, 1_000_000), (1_000, 100_000), (1, 100_000_000)],
          "small": [(1, 1_000_000), (10, 100_000), (100, 10_000)]}


def _counts_mj(values, thresholds):
    return jnp.sum(values[:, None] >= thresholds[None, :], axis=0, dtype=jnp.int32)


def _counts_jm(values, thresholds):
    return jnp.sum(values[None, :] >= thresholds[:, None], axis=1, dtype=jnp.int32)


LAYOUTS = {"search, two-level counts": None, "search, counts (m, J)": _counts_mj, "search, counts (J, m)": _counts_jm}


def _with_layout(fn, counts):
    """fn traced with the XLA counts of ``tailjax.risk._counts`` replaced by ``counts`` (None:
    the library's)."""
    def wrapped(*args):
        original = _counts._xla
        _counts._xla = counts or original
        try:
            return fn(*args)
        finally:
            _counts._xla = original
    return wrapped


def main(argv=None):
    parser = harness.parser(__doc__, out="results/cvar_bracket")
    parser.add_argument("--shapes", nargs="*", help="BxN shapes instead of the size's, e.g. 100x1000000")
    parser.add_argument("--tail-probs", type=float, nargs="*", default=[1e-3, 1e-2, 1e-1])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--variants", nargs="*", help="only the brackets whose names contain one of these")
    args = parser.parse_args(argv)
    keep = lambda name: not args.variants or any(v in name for v in args.variants)
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes] if args.shapes else SHAPES[args.size]
    rows = []

    def add(**row):
        rows.append(row)
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
        harness.write_json(args.out, "cvar_bracket", {"size": args.size, "device": jax.devices()[0].device_kind,
                                                      "rows": rows})

    x_all = jax.random.normal(jax.random.PRNGKey(0), (max(b * n for b, n in shapes),), jnp.float32)
    for b, n in shapes:
        x = x_all[: b * n].reshape(b, n)
        x64 = np.asarray(x).astype(np.float64)
        floor, _ = timing(jax.jit(jnp.sum), x, repeats=args.repeats)
        add(shape=f"{b}x{n}", stage="floor (jnp.sum)", **floor)
        for p in args.tail_probs:
            rank = select._rank(n, p)
            base = select.SelectConfig(bracket="search")
            m = _bracket.sample_size(b, n, base)  # the library's share of the batch's subsample
            idx = ((jnp.arange(m, dtype=jnp.float32) + 0.5) * (n / m)).astype(jnp.int32)
            t, _ = timing(jax.jit(lambda x: x[:, jnp.clip(idx, 0, n - 1)]), x, repeats=args.repeats)
            add(shape=f"{b}x{n}", tail_prob=p, stage="subsample gather", sample=m, **t)
            kernel = "pallas" if jax.default_backend() == "gpu" else "interpret"
            configs = {"search, Pallas counts": base._replace(count_backend=kernel), "sort": base._replace(bracket="sort")}
            variants = {name: _with_layout(lambda x, cfg=base: _bracket.sample_bracket(x, rank, m, cfg), counts)
                        for name, counts in LAYOUTS.items()}
            variants.update({name: lambda x, cfg=cfg: _bracket.sample_bracket(x, rank, m, cfg)
                             for name, cfg in configs.items()})
            for name, fn in [(k, f) for k, f in variants.items() if keep(k)]:
                t, (lo, hi) = timing(jax.jit(fn), x, repeats=args.repeats)
                held = np.sum((x64 >= np.asarray(lo)[:, None]) & (x64 < np.asarray(hi)[:, None]), axis=1)
                v = -np.sort(-x64, axis=1)[:, rank - 1] if b * n <= 10**7 else None
                covers = None if v is None else bool(np.all((np.asarray(lo) <= v) & (v < np.asarray(hi))))
                add(shape=f"{b}x{n}", tail_prob=p, stage=f"bracket: {name}", sample=m,
                    members_mean=float(held.mean()), members_max=int(held.max()), covers_v=covers, **t)
            ref = np.array([reference(row, p) for row in x64])
            whole = {f"bracket={name}": _with_layout(lambda x, cfg=base: risk.cvar_large(x, p, config=cfg), counts)
                     for name, counts in LAYOUTS.items()}
            whole.update({f"bracket={name}": lambda x, cfg=cfg: risk.cvar_large(x, p, config=cfg)
                          for name, cfg in configs.items()})
            for name, fn in [(k, f) for k, f in whole.items() if keep(k)]:
                t, value = timing(jax.jit(fn), x, repeats=args.repeats)
                add(shape=f"{b}x{n}", tail_prob=p, stage=f"cvar_large, {name}",
                    rel_err=float(np.max(np.abs(np.asarray(value, np.float64) - ref) / np.abs(ref))),
                    x_floor=t["pipelined_ms"] / floor["pipelined_ms"], **t)


if __name__ == "__main__":
    main()

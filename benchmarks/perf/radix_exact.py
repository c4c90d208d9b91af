"""Exactness of the short-row key search (``tailjax.risk._radix``) on the device.

    python -m benchmarks.perf.radix_exact --out DIR

Each (shape, dtype, rank): the kernel's (v, E(v), NaN count) against a float64 sort on the
host, one line each and a JSON of them all; rows carry +-inf and a NaN. Then the (7, 3)
batch that disagreed on an H100 with 2,048-row programs (the layout before programs were
capped at the batch's rows), that layout beside the capped one, and ``risk.cvar`` /
``risk.cvar_large`` there against the host. Not a timing.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _harness as harness
from tailjax import risk
from tailjax.risk import SelectConfig, _radix

SHAPES = [(7, 3), (7, 17), (1, 64), (2049, 64), (7, 65), (1, 1000), (10_000, 1_000), (3, 16_384)]


def _rows(shape, dtype):
    b, n = shape
    x = jax.random.normal(jax.random.PRNGKey(n), shape)
    x = x.at[0, min(1, n - 1)].set(jnp.inf).at[min(1, b - 1), 0].set(-jnp.inf).at[b - 1, n - 1].set(jnp.nan)
    return x.astype(dtype)


def host_select(x, rank):
    """(v, E(v), NaN count) per row by a float64 sort of the non-NaN values."""
    x64 = np.asarray(x.astype(jnp.float32), np.float64)
    out = []
    for row in x64:
        fin = row[~np.isnan(row)]
        v = -np.sort(-fin)[rank - 1] if rank <= fin.size else np.nan
        with np.errstate(invalid="ignore"):
            out.append((v, np.sum(np.where(fin > v, fin - v, 0.0)), int(np.isnan(row).sum())))
    return [np.array(c) for c in zip(*out)]


def compare(got, want):
    v, e, nans = (np.asarray(g, np.float64) for g in got)
    vr, er, nr = want
    rows_ok = ~np.isnan(vr)  # rows with fewer non-NaN values than the rank: v undefined
    v_same = bool(np.all(v[rows_ok] == vr[rows_ok]))
    with np.errstate(invalid="ignore"):
        e_err = float(np.nanmax(np.where(rows_ok, np.abs(e - er) / (1 + np.abs(er)), 0.0)))
    return {"v_exact": v_same, "e_max_rel_err": e_err, "nan_count_same": bool(np.all(nans == nr))}


def main(argv=None):
    parser = harness.parser(__doc__, out="results/radix_exact")
    parser.add_argument("--backend", default="pallas", choices=["pallas", "interpret"],
                        help="interpret: the Pallas interpreter (a CPU check of this script)")
    parser.add_argument("--shapes", nargs="*", help="BxN shapes instead of the default list, e.g. 7x3")
    args = parser.parse_args(argv)
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes] if args.shapes else SHAPES
    rows = []
    for dtype in ("float32", "bfloat16"):
        for shape in shapes:
            x, n = _rows(shape, dtype), shape[1]
            for rank in sorted({1, n // 10 + 1, n}):
                rec = {"shape": f"{shape[0]}x{n}", "dtype": dtype, "rank": rank,
                       **compare(_radix.radix_select(x, rank, args.backend), host_select(x, rank))}
                rows.append(rec)
                print(rec, flush=True)
                harness.write_json(args.out, "radix_exact", {"rows": rows})
    x = _rows((7, 3), "float32")
    old = {"layout": "2048-row programs (before the cap)",
           **compare(_radix._pallas(x, 1, args.backend == "interpret", rows_per_program=2048), host_select(x, 1))}
    print(old, flush=True)
    ref = np.asarray(x, np.float64).max(axis=1)  # tail 1e-3 of 3 values: the CVaR is the maximum
    ref[np.isnan(np.asarray(x)).any(axis=1)] = np.nan
    ends = {"host max": ref.tolist(), "risk.cvar": np.asarray(risk.cvar(x, 1e-3), np.float64).tolist(),
            "cvar_large radix": np.asarray(risk.cvar_large(x, 1e-3, config=SelectConfig(short="radix"))).tolist(),
            "cvar_large top_k": np.asarray(risk.cvar_large(x, 1e-3, config=SelectConfig(short="top_k"))).tolist()}
    print(ends, flush=True)
    harness.write_json(args.out, "radix_exact", {"rows": rows, "uncapped_7x3": old, "cvar_7x3": ends})
    bad = [r for r in rows if not (r["v_exact"] and r["nan_count_same"] and r["e_max_rel_err"] < 1e-5)]
    print(f"{len(rows) - len(bad)} of {len(rows)} cases exact", flush=True)
    return not bad


if __name__ == "__main__":
    sys.exit(0 if main() else 1)

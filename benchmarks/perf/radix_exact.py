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
    """Agreement of one result with the host's: v exactly, E(v) to its largest relative error
    (equal infinities agree; a NaN where the host has none counts as an infinite error), the
    NaN count exactly; and the rows that disagree."""
    v, e, nans = (np.asarray(g, np.float64) for g in got)
    vr, er, nr = want
    rows_ok = ~np.isnan(vr)  # rows with fewer non-NaN values than the rank: v undefined
    with np.errstate(invalid="ignore"):
        e_err = np.where(e == er, 0.0, np.abs(e - er) / (1 + np.abs(er)))
    e_err = np.where(rows_ok, np.nan_to_num(e_err, nan=np.inf), 0.0)
    bad = rows_ok & ((v != vr) | (e_err >= 1e-5)) | (nans != nr)
    return {"v_exact": bool(np.all(v[rows_ok] == vr[rows_ok])), "e_max_rel_err": float(e_err.max()),
            "nan_count_same": bool(np.all(nans == nr)), "bad_rows": np.flatnonzero(bad)[:5].tolist(),
            "first_bad": None if not bad.any() else {k: float(a[np.flatnonzero(bad)[0]]) for k, a in
                                                     (("v", v), ("v_host", vr), ("e", e), ("e_host", er),
                                                      ("nans", nans), ("nans_host", nr))}}


def repeated(shape, rank, runs, backend, per=None):
    """Normal rows (cvar_batched's data) through the kernel ``runs`` times (``per`` rows a
    program, or the kernel's own choice): how many runs disagree with the host, and the first
    disagreement."""
    x = jax.random.normal(jax.random.PRNGKey(0), shape, jnp.float32)
    want = host_select(x, rank)
    fn = jax.jit(lambda x: _radix._pallas(x, rank, backend == "interpret", rows_per_program=per))
    results = [compare(fn(x), want) for _ in range(runs)]
    bad = [r for r in results if r["bad_rows"]]
    return {"shape": f"{shape[0]}x{shape[1]}", "rank": rank, "rows_per_program": per, "runs": runs,
            "bad_runs": len(bad), "bad_rows_per_run": [len(r["bad_rows"]) for r in bad],
            "first": bad[0] if bad else None}


def default_cases(args):
    """The default list (or --shapes) in float32 and bfloat16 at three ranks, then the (7, 3)
    batch in the uncapped layout and through risk.cvar / cvar_large."""
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
    return rows, {"uncapped_7x3": old, "cvar_7x3": ends}


def main(argv=None):
    parser = harness.parser(__doc__, out="results/radix_exact")
    parser.add_argument("--backend", default="pallas", choices=["pallas", "interpret"],
                        help="interpret: the Pallas interpreter (a CPU check of this script)")
    parser.add_argument("--shapes", nargs="*", help="BxN shapes instead of the default list, e.g. 7x3")
    parser.add_argument("--repeat", nargs="*", default=[], metavar="BxN:RANK[:PER]",
                        help="also run normal rows of these shapes and ranks --runs times each (is a "
                             "disagreement deterministic?), PER rows a program if given")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--no-default", dest="default_cases", action="store_false",
                        help="skip the default list and the (7, 3) checks")
    args = parser.parse_args(argv)
    rows, report = [], {}
    if args.default_cases:
        rows, report = default_cases(args)
    reps = []
    for case in args.repeat:
        shape, rank, *per = case.split(":")
        reps.append(repeated(tuple(int(v) for v in shape.split("x")), int(rank), args.runs, args.backend,
                             int(per[0]) if per else None))
        print(reps[-1], flush=True)
        harness.write_json(args.out, "radix_exact", {"rows": rows, **report, "repeated": reps})
    harness.write_json(args.out, "radix_exact", {"rows": rows, **report, "repeated": reps})
    bad = [r for r in rows if r["bad_rows"]] + [r for r in reps if r["bad_runs"]]
    print(f"{sum(not r['bad_rows'] for r in rows)} of {len(rows)} cases exact; "
          f"{sum(r['bad_runs'] for r in reps)} of {sum(r['runs'] for r in reps)} repeated runs wrong", flush=True)
    return not bad


if __name__ == "__main__":
    sys.exit(0 if main() else 1)

"""Importance sampling for tail risks: samples SAA needs vs self-structuring IS.

Heavy-tailed portfolio (5 assets, multivariate t returns with nu = 3) at the optimal
decision theta*: the number n of samples for which the estimate of CVaR(theta*) has
relative error <= 10% with 95% confidence (95th percentile of |rel. error| over 200
replications, doubling grid from 128 to 2^18), at tail_prob (the tutorial's beta) = 1e-2
and 1e-3. The 10% target keeps this under a minute and a half on a CPU; the full benchmark
(`python -m benchmarks.seeds.importance_sampling`) uses the tutorial's 1% target, more tail
levels, Gaussian returns, tilting, the optimal value, and RA vs HiGHS timings.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _harness as harness
from benchmarks.setups import importance as setup
from tailjax.stochopt.problems import portfolio_optimum, portfolio_problem, portfolio_var_cvar

TARGET = 0.10
TAIL_PROBS = (1e-2, 1e-3)
CFG = dict(reps=200, n_min=2**7, n_max=2**18, max_elems=2**25)


def run(out_dir: pathlib.Path) -> str:
    with jax.enable_x64(True):
        p64 = portfolio_problem(5, "t", dtype=jnp.float64)
    p = portfolio_problem(5, "t", dtype=jnp.float32)
    rows, curves = [], []
    for tail_prob in TAIL_PROBS:
        with jax.enable_x64(True):
            theta, _, var = portfolio_optimum(p64, tail_prob)
            exact = float(portfolio_var_cvar(p64, theta, tail_prob)[1])
            theta, var = np.asarray(theta), float(var)
        th = jnp.asarray(theta, jnp.float32)
        for method in ("saa", "self_structuring"):
            params = setup.choose_params(p, method, tail_prob, jnp.asarray(var, jnp.float32), th)
            found, curve, _ = setup.estimate_search(p, th, tail_prob, exact, method, params, key=jax.random.PRNGKey(0),
                                                    target=TARGET, **CFG)
            row = dict(part="a", returns="t", tail_prob=tail_prob, method=method, n=found["a"], n_max=curve[-1]["n"],
                       exact=exact)
            rows.append(row)
            curves.append(dict(row, curve=[dict(n=q["n"], **q["a"]) for q in curve]))
    harness.write_json(out_dir, "importance", dict(target=TARGET, config=CFG, rows=rows, curves=curves))
    setup.plot_curves(curves, TARGET, out_dir, "importance")
    table = []
    for tail_prob in TAIL_PROBS:
        saa, ss = (next(r for r in rows if r["tail_prob"] == tail_prob and r["method"] == m)
                   for m in ("saa", "self_structuring"))
        fmt = lambda r: str(r["n"]) if r["n"] is not None else f">{r['n_max']}"  # noqa: E731
        if ss["n"] is None:
            ratio = "-"
        else:
            ratio = ("" if saa["n"] is not None else ">") + f"{(saa['n'] or saa['n_max']) / ss['n']:.1f}"
        table.append({"tail_prob": f"{tail_prob:.0e}", "n_SAA": fmt(saa), "n_SS-IS": fmt(ss), "ratio": ratio})
    title = (f"heavy-tailed portfolio (t, nu=3, d=5): n for {TARGET:.0%} rel. error of CVaR(theta*) w.p. 95% "
             f"({CFG['reps']} reps)")
    return title + "\n" + harness.markdown_table(table, ["tail_prob", "n_SAA", "n_SS-IS", "ratio"])

"""Importance sampling for tail risks: samples SAA needs vs self-structuring IS.

Heavy-tailed portfolio (5 assets, multivariate t returns with nu = 3) at the optimal
decision theta*: the number n of samples for which the estimate of CVaR_beta(theta*) has
relative error <= 10% with 95% confidence (95th percentile of |rel. error| over 200
replications, doubling grid from 128 to 2^18), at beta = 1e-2 and 1e-3. The 10% target
keeps this under a minute and a half on a CPU; the full benchmark
(`python -m benchmarks.seeds.importance_sampling`) uses the tutorial's 1% target, more tail
levels, Gaussian returns, tilting, the optimal value, and RA vs HiGHS timings.
"""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.seeds.importance_sampling import choose_params, part_a, plot
from tailjax.stochopt.problems import portfolio_optimum, portfolio_problem, portfolio_var_cvar

TARGET = 0.10
BETAS = (1e-2, 1e-3)
CFG = dict(reps=200, a_max=2**18, dim=5, max_elems=2**25)


def run(out_dir: pathlib.Path) -> str:
    with jax.enable_x64(True):
        p64 = portfolio_problem(5, "t", dtype=jnp.float64)
    p = portfolio_problem(5, "t", dtype=jnp.float32)
    rows, curves = [], []
    for beta in BETAS:
        with jax.enable_x64(True):
            theta, _, var = portfolio_optimum(p64, beta)
            exact = float(portfolio_var_cvar(p64, theta, beta)[1])
            theta, var = np.asarray(theta), float(var)
        th = jnp.asarray(theta, jnp.float32)
        for method in ("saa", "self_structuring"):
            params = choose_params(p, method, beta, jnp.asarray(var, jnp.float32), th)
            found, curve, _ = part_a(p, th, beta, exact, method, params, CFG, jax.random.PRNGKey(0), TARGET)
            row = dict(part="a", returns="t", beta=beta, method=method, n=found["a"], n_max=curve[-1]["n"], exact=exact)
            rows.append(row)
            curves.append(dict(row, curve=[dict(n=q["n"], **q["a"]) for q in curve]))
    (out_dir / "importance.json").write_text(json.dumps(dict(target=TARGET, config=CFG, rows=rows, curves=curves), indent=2))
    plot(curves, out_dir / "importance.png")
    lines = [f"heavy-tailed portfolio (t, nu=3, d=5): n for {TARGET:.0%} rel. error of CVaR(theta*) w.p. 95% (200 reps)",
             f"{'beta':>6s} {'n_SAA':>8s} {'n_SS-IS':>8s} {'ratio':>7s}"]
    for beta in BETAS:
        saa, ss = (next(r for r in rows if r["beta"] == beta and r["method"] == m) for m in ("saa", "self_structuring"))
        fmt = lambda r: str(r["n"]) if r["n"] is not None else f">{r['n_max']}"  # noqa: E731
        if ss["n"] is None:
            ratio = "-"
        else:
            ratio = ("" if saa["n"] is not None else ">") + f"{(saa['n'] or saa['n_max']) / ss['n']:.1f}"
        lines.append(f"{beta:6.0e} {fmt(saa):>8s} {fmt(ss):>8s} {ratio:>7s}")
    return "\n".join(lines)

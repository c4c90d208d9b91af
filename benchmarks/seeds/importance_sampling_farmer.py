"""The risk-averse two-stage farmer LP with importance sampling: SAA against self-structuring
IS on the optimal value (Deo & Murthy's tutorial, Example 2, in a variant that meets its
assumption 2).

Problem (:func:`tailjax.stochopt.problems.farmer_problem` with ``demand_sd > 0``): Birge &
Louveaux's farmer, yields t = (2.5, 3, 20) max(1 + 0.15 X_{1:3}, 0) and, unlike Example 2,
random feed demand D = (200, 240) max(1 + sigma_D X_{4:5}, 0), X iid Student-t(3) in R^5.
In Example 2 the cost is bounded above (no harvest costs at most the feed and the
planting), so its upper tail is no large-deviations tail and assumption 2 fails; with
random demand the cost grows linearly in X_4, X_5 (rho = 1). Minimise CVaR_beta of the total
cost over the acres (sum <= 500). The recourse LP is evaluated in closed form (it separates by
crop; ``--lp`` solves it with the JAX interior-point LP instead, the same values, slower).

1. Reference: c_beta, theta* and the VaR from ``ref_n`` IS draws (self-structuring, h by the
   oracle at the SAA solution of ``ref_n`` plain draws, which is reported beside it).
2. Asymptotic variances at (VaR, theta*): sigma^2 = Var[(l - VaR)_+ L] / beta^2 from ``var_n``
   plain draws (SAA; no closed form here) and ``var_n`` IS draws, each with a 95%
   batch-means interval; the ratio's interval combines both.
3. Optimal value at finite n: the sample problem (SAA or IS, h fixed at the oracle's choice),
   solved to a 1e-6 certified relative gap, ``reps`` times per n; relative error to c_beta
   (95th percentile and RMSE). Every sample is counted; the oracle's pilot (2048) is not.

    python -m benchmarks.seeds.importance_sampling_farmer --size small --out benchmarks/results/importance_sampling_cpu/farmer
"""

from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from benchmarks import _harness as harness
from tailjax.importance import self_structuring_oracle, self_structuring_sample
from tailjax.stochopt import solve_saa
from tailjax.stochopt.problems import farmer_problem

SIZES = {
    "tiny": dict(tail_probs=(1e-2,), demand_sd=0.2, ref_n=2**16, var_n=2**15, batches=16, reps=8, n_grid=(2**9, 2**10)),
    "small": dict(tail_probs=(1e-2,), demand_sd=0.2, ref_n=2**20, var_n=2**20, batches=32, reps=50,
                  n_grid=tuple(2**k for k in range(9, 15))),
    "paper": dict(tail_probs=(1e-2, 1e-3), demand_sd=0.2, ref_n=2**24, var_n=2**23, batches=64, reps=200,
                  n_grid=tuple(2**k for k in range(9, 19))),
}
PILOT = 2048


def _variance(loss, fm, theta, u, tail_prob, draw, n, batches, key):
    """sigma^2 = Var[(l - u)_+ L] / beta^2 from n draws, with a 95% batch-means interval."""
    m = n // batches

    @jax.jit
    def moments(k):
        z, log_lr = draw(k, m)
        y = jnp.maximum(jax.vmap(loss, in_axes=(0, None))(z, theta) - u, 0.0) * jnp.exp(log_lr)
        return jnp.mean(y), jnp.mean(y * y)

    mean, sq = (np.asarray(a) for a in jax.lax.map(moments, jax.random.split(key, batches)))
    per_batch = (sq - mean**2) / tail_prob**2
    value = float(np.mean(sq) - np.mean(mean) ** 2) / tail_prob**2
    half = float(stats.t.ppf(0.975, batches - 1) * np.std(per_batch, ddof=1) / np.sqrt(batches))
    return value, (value - half, value + half)


def run(cfg, lp, key):
    fm = farmer_problem(demand_sd=cfg["demand_sd"], shocks="t")
    loss = fm.loss if lp else fm.loss_closed_form
    plain = lambda k, n: (fm.dist.sample(k, n), jnp.zeros(n))  # noqa: E731
    rows, curves = [], []
    for tail_prob in cfg["tail_probs"]:
        solve = jax.jit(lambda z, lr: solve_saa(loss, z, fm.theta_set, tail_prob, log_lr=lr, tol=1e-6, max_iter=200))
        k_ref, k_oracle, k_is, k_var, k_grid = jax.random.split(jax.random.fold_in(key, int(1 / tail_prob)), 5)
        t0 = time.perf_counter()
        saa_ref = solve(*plain(k_ref, cfg["ref_n"]))
        h, info = jax.jit(lambda k, u, th: self_structuring_oracle(k, u, th, fm.dist, loss, tail_prob,
                                                                   pilot_size=PILOT))(k_oracle, saa_ref.u, saa_ref.theta)
        is_draw = lambda k, n: self_structuring_sample(k, fm.dist, n, h, tail_prob)  # noqa: E731
        ref = solve(*is_draw(k_is, cfg["ref_n"]))
        c_ref, theta, u = float(ref.value), ref.theta, ref.u
        s2_saa, ci_saa = _variance(loss, fm, theta, u, tail_prob, plain, cfg["var_n"], cfg["batches"], k_var)
        s2_is, ci_is = _variance(loss, fm, theta, u, tail_prob, is_draw, cfg["var_n"], cfg["batches"], k_var)
        row = dict(tail_prob=tail_prob, c_ref_is=c_ref, c_ref_saa=float(saa_ref.value), theta=np.asarray(theta),
                   var=float(u), h=float(h), oracle_fallback=int(info.fallback), ref_n=cfg["ref_n"],
                   ref_gap=float(ref.gap), sigma2_saa=s2_saa, sigma2_saa_ci=ci_saa, sigma2_is=s2_is,
                   sigma2_is_ci=ci_is, ratio=s2_saa / s2_is, ratio_ci=(ci_saa[0] / ci_is[1], ci_saa[1] / max(ci_is[0], 1e-300)),
                   seconds_reference=time.perf_counter() - t0)
        print(f"[farmer] beta={tail_prob:.0e} c_beta {c_ref:.6g} (SAA {row['c_ref_saa']:.6g}), h={float(h):.3g}, "
              f"variance ratio {row['ratio']:.3g} {row['ratio_ci']}", flush=True)
        for method, draw in (("saa", plain), ("self_structuring", is_draw)):
            curve = []
            for n in cfg["n_grid"]:
                batch = jax.jit(jax.vmap(lambda k, n=n, draw=draw: solve(*draw(k, n)).value))
                t1 = time.perf_counter()
                err = np.abs(np.asarray(batch(jax.random.split(jax.random.fold_in(k_grid, n), cfg["reps"]))) / c_ref - 1)
                curve.append(dict(n=n, q95=float(np.quantile(err, 0.95)), rmse=float(np.sqrt(np.mean(err**2))),
                                  seconds=time.perf_counter() - t1))
                print(f"[farmer] {method} n={n}: q95 {curve[-1]['q95']:.3g} rmse {curve[-1]['rmse']:.3g}", flush=True)
            curves.append(dict(tail_prob=tail_prob, method=method, curve=curve))
        rows.append(row)
    return fm, rows, curves


def _plot(rows, curves, out):
    fig, axes = harness.figure(1, len(rows), figsize=(4.5 * len(rows), 3.4), squeeze=False)
    for ax, row in zip(axes.flat, rows):
        for c in curves:
            if c["tail_prob"] == row["tail_prob"]:
                ns = [q["n"] for q in c["curve"]]
                ax.loglog(ns, [q["q95"] for q in c["curve"]], "o-", ms=3, label=f"{c['method']} (q95)")
                ax.loglog(ns, [q["rmse"] for q in c["curve"]], "x--", ms=3, label=f"{c['method']} (rmse)")
        ax.set_title(f"farmer, random demand, tail_prob={row['tail_prob']:.0e}", fontsize=9)
        ax.set_xlabel("n")
        ax.set_ylabel("|optimal value / c_beta - 1|")
        ax.legend(fontsize=7)
    return harness.save_figure(fig, out, "farmer")


def main(argv=None):
    parser = harness.parser(__doc__, sizes=tuple(SIZES), out="results/importance_sampling_farmer",
                            compile_cache=True)
    parser.add_argument("--lp", action="store_true", help="solve the recourse LP in JAX instead of its closed form")
    args = parser.parse_args(argv)
    harness.use_compile_cache(args)
    cfg = SIZES[args.size]
    with jax.enable_x64(True):
        t0 = time.perf_counter()
        _, rows, curves = run(cfg, args.lp, jax.random.PRNGKey(args.first_seed))
    harness.write_json(args.out, "farmer", dict(size=args.size, config=cfg, lp=args.lp, rows=rows, curves=curves,
                                                total_seconds=time.perf_counter() - t0))
    args.out.joinpath("command.txt").write_text(harness.environment()["command"] + "\n")
    _plot(rows, curves, args.out)
    table = [dict(tail_prob=f"{r['tail_prob']:.0e}", c_beta=r["c_ref_is"], c_beta_saa_ref=r["c_ref_saa"], h=r["h"],
                  ratio=f"{r['ratio']:.3g} [{r['ratio_ci'][0]:.3g}, {r['ratio_ci'][1]:.3g}]") for r in rows]
    lines = ["asymptotic variance ratio sigma^2_SAA / sigma^2_IS of the optimal value at theta* (95% interval)", "",
             harness.markdown_table(table, list(table[0])), "", "relative error of the optimal value (q95 / rmse)", ""]
    grid = []
    for c in curves:
        for q in c["curve"]:
            grid.append(dict(tail_prob=f"{c['tail_prob']:.0e}", method=c["method"], n=q["n"], q95=q["q95"], rmse=q["rmse"]))
    lines.append(harness.markdown_table(grid, ["tail_prob", "method", "n", "q95", "rmse"], {"q95": ".3g", "rmse": ".3g"}))
    text = "\n".join(lines)
    (args.out / "farmer.md").write_text(text + "\n")
    print(text)
    print(json.dumps({"rows": len(rows)}))


if __name__ == "__main__":
    main()

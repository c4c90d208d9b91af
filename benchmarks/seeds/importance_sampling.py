"""Sample requirements of SAA vs importance sampling for tail-risk minimisation
(Deo & Murthy's tutorial headline, Example 1), and RA-with-IS vs SAA solved by HiGHS.

For the portfolio of :mod:`tailjax.stochopt.problems.portfolio` (Gaussian returns and
multivariate-t returns with nu = 3) and beta in {1e-2, 1e-3, 1e-4}, the number of samples n
needed so that the estimate of

  (a) C_beta(theta*) at the fixed optimal portfolio theta* (min over u of the SAA / IS
      objective, one weighted sort), and
  (b) the optimal value c_beta (the SAA / IS sample problem solved to a 1e-6 relative
      certified gap by the JAX level method, vmapped over replications)

has relative error <= 1% with 95% confidence: the 95th percentile of |estimate/exact - 1|
over R >= 200 independent replications is <= 0.01, searching n on a doubling grid (from
128 for (a), from ``b_min`` for (b), up to the size's cap; "> cap" when not reached).
Exact values are closed forms (a) and a deterministic convex program solved to 1e-9 (b).
Part (a) runs in float32, part (b) in float64.

Methods: SAA (plain samples), exponential tilting at the dominating point (Gaussian only:
the t law has no moment generating function), and self-structuring IS (T_h). The IS law
is chosen ONCE per configuration by the method's oracle at the exact (VaR, theta*) — the
tutorial's setting, which isolates the estimator's sample efficiency; the oracle's pilot
samples (2048) are not counted in n.

Then the wall-clock of RA with self-structuring IS (Algorithm 1, oracle re-run at every
stage from a feasible start, final stage n_IS) against SAA with n_SAA samples solved as one
LP by scipy's HiGHS, side by side in this process: ratios are reported; absolute seconds go
to the JSON with the device kind (only GPU runs should be quoted as absolute).

    python -m benchmarks.seeds.importance_sampling --size small    # CPU, minutes
    python -m benchmarks.seeds.importance_sampling --size medium   # CPU, about an hour
    python -m benchmarks.seeds.importance_sampling --size paper    # GPU
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from tailjax.importance import (
    default_h_grid,
    gaussian_tilting_scheme,
    is_var_cvar,
    sample_gaussian_mixture,
    sample_losses,
    self_structuring_oracle,
    self_structuring_sample,
    self_structuring_scheme,
)
from tailjax.stochopt import build_retrospective_approximation, solve_saa
from tailjax.risk.empirical import tail_count
from tailjax.stochopt.problems import portfolio_optimum, portfolio_problem, portfolio_var_cvar

SIZES = {
    "small": dict(dim=5, reps=200, betas=(1e-2, 1e-3, 1e-4), a_max=2**17, b_betas=(1e-2,), b_min=2**9, b_max=2**13,
                  chunk=100, ra_betas=(1e-2,)),
    "medium": dict(dim=5, reps=200, betas=(1e-2, 1e-3, 1e-4), a_max=2**20, b_betas=(1e-2,), b_min=2**10,
                   b_max=2**15, chunk=25, ra_betas=(1e-2,)),
    "paper": dict(dim=10, reps=200, betas=(1e-2, 1e-3, 1e-4), a_max=2**22, b_betas=(1e-2, 1e-3, 1e-4), b_min=2**10,
                  b_max=2**17, chunk=25, ra_betas=(1e-2, 1e-3)),
}
N_MIN = 2**7
TARGET = 0.01
PILOT = 2048


def _methods(returns):
    return ("saa", "tilting", "self_structuring") if returns == "gaussian" else ("saa", "self_structuring")


def choose_params(p, method, beta, var, theta):
    """The IS parameter of ``method`` at (u, theta) = (VaR, theta*), chosen by its oracle."""
    if method == "saa":
        return jnp.zeros((), p.mean.dtype)
    if method == "tilting":
        eye = jnp.eye(p.dim, dtype=p.mean.dtype)
        scheme = gaussian_tilting_scheme(jnp.zeros(p.dim, p.mean.dtype), eye, p.pieces)
        return jax.jit(scheme.choose)(jax.random.PRNGKey(1), var, theta)
    grid = jnp.asarray(default_h_grid(beta), p.mean.dtype)
    oracle = jax.jit(lambda k, u, th, b, g: self_structuring_oracle(k, u, th, p.dist, p.loss, b, h_grid=g, pilot_size=PILOT)[0])
    return oracle(jax.random.PRNGKey(1), var, theta, jnp.asarray(beta, p.mean.dtype), grid)


def _draw(p, method, params, key, n, beta):
    if method == "saa":
        z = p.dist.sample(key, n)
        return z, jnp.zeros(n, z.dtype)
    if method == "tilting":
        return sample_gaussian_mixture(key, params, n, jnp.eye(p.dim, dtype=p.mean.dtype))
    return self_structuring_sample(key, p.dist, n, params, beta)


_CACHE: dict = {}


MAX_BETA = 1e-2  # plain-SAA CVaR uses lax.top_k with k = floor(n MAX_BETA) + 1


def _saa_cvar_top_k(losses, n, beta):
    """CVaR of n equally weighted losses at tail mass beta <= MAX_BETA (may be traced) from the
    top floor(n MAX_BETA) + 1 values (lax.top_k instead of a full sort; the same count rule
    and value as :func:`tailjax.risk.var_cvar`)."""
    count = tail_count(n, beta, losses.dtype)
    k = min(int(math.floor(n * MAX_BETA)) + 1, n)
    top = jax.lax.top_k(losses, k)[0]
    share = jnp.clip(count - jnp.arange(k, dtype=losses.dtype), 0.0, 1.0)
    return jnp.sum(share * top, axis=-1) / count


def _compiled(kind, p, method, n):
    """One program per (kind, law, method, n), shared across beta (traced) and parameters."""
    key = (kind, p.dist.sample, method, n)
    if key not in _CACHE:
        if kind == "estimate" and method == "saa":
            def fn(keys, params, beta, theta):
                def one(k):
                    return _saa_cvar_top_k(sample_losses(p.loss, p.dist.sample(k, n), theta), n, beta)

                return jax.vmap(one)(keys)
        elif kind == "estimate":
            def fn(keys, params, beta, theta):
                def one(k):
                    z, log_lr = _draw(p, method, params, k, n, beta)
                    return is_var_cvar(sample_losses(p.loss, z, theta), log_lr, beta)[1]

                return jax.vmap(one)(keys)
        else:
            def fn(keys, params, beta, theta):
                return jax.vmap(lambda k: _draw(p, method, params, k, n, beta))(keys)

        _CACHE[key] = jax.jit(fn)
    return _CACHE[key]


def _q95(est, exact):
    rel = np.abs(np.asarray(est) / exact - 1.0)
    return float(np.quantile(rel, 0.95)), float(np.sqrt(np.mean(rel**2)))


def _search(run_n, exact, n_min, n_max, target=TARGET):
    """Doubling search: first n with q95 <= target; returns (n or None, curve)."""
    curve, n = [], n_min
    while n <= n_max:
        q95, rmse = _q95(run_n(n), exact)
        curve.append(dict(n=n, q95=q95, rmse=rmse))
        if q95 <= target:
            return n, curve
        n *= 2
    return None, curve


def _chunks(key, cfg):
    keys = jax.random.split(key, cfg["reps"])
    return [keys[i : i + cfg["chunk"]] for i in range(0, cfg["reps"], cfg["chunk"])]


def part_a(p, theta, beta, exact, method, params, cfg, key, target=TARGET):
    """Estimate C_beta(theta) from n samples, reps times."""
    b = jnp.asarray(beta, p.mean.dtype)

    def run_n(n):
        f = _compiled("estimate", p, method, n)
        return np.concatenate([np.asarray(f(k, params, b, theta)) for k in _chunks(jax.random.fold_in(key, n), cfg)])

    return _search(run_n, exact, N_MIN, cfg["a_max"], target)


_SOLVERS: dict = {}


def _batched_solver(p, n):
    """One compiled program per n, shared by every (distribution, beta, method)."""
    if n not in _SOLVERS:
        def one(z, log_lr, beta):
            return solve_saa(p.loss, z, p.theta_set, beta, log_lr=log_lr, tol=1e-6, max_iter=150).value

        _SOLVERS[n] = jax.jit(jax.vmap(one, in_axes=(0, 0, None)))
    return _SOLVERS[n]


def part_b(p, beta, exact, method, params, cfg, key):
    """Solve the SAA / IS sample problem from n samples, reps times; compare its optimum."""
    b = jnp.asarray(beta, p.mean.dtype)
    theta0 = p.theta_set.feasible_point(p.mean.dtype)

    def run_n(n):
        draw, solve = _compiled("draw", p, method, n), _batched_solver(p, n)
        out = []
        for k in _chunks(jax.random.fold_in(key, n), cfg):
            z, log_lr = draw(k, params, b, theta0)
            out.append(np.asarray(solve(z, log_lr, b)))
        return np.concatenate(out)

    return _search(run_n, exact, cfg["b_min"], cfg["b_max"])


def highs_saa(p, x, beta):
    """SAA of the CVaR problem as one LP (theta, u, z), solved by scipy's HiGHS."""
    import scipy.sparse as sp
    from scipy.optimize import linprog

    n, d = x.shape
    r = np.asarray(p.mean) + np.asarray(x) @ np.asarray(p.chol).T
    c = np.concatenate([np.zeros(d), [1.0], np.full(n, 1.0 / (n * beta))])
    rows = sp.hstack([sp.csr_matrix(-r), -np.ones((n, 1)), -sp.eye(n)])
    ret = sp.hstack([sp.csr_matrix(-np.asarray(p.mean)[None]), sp.csr_matrix((1, 1 + n))])
    a_eq = sp.hstack([sp.csr_matrix(np.ones((1, d))), sp.csr_matrix((1, 1 + n))])
    bounds = [(0, None)] * d + [(None, None)] + [(0, None)] * n
    res = linprog(c, A_ub=sp.vstack([rows, ret]), b_ub=np.concatenate([np.zeros(n), [-float(p.theta_set.target)]]),
                  A_eq=a_eq, b_eq=[1.0], bounds=bounds, method="highs")
    return res.fun


def wall_clock(p, returns, beta, n_is, n_saa, exact, key):
    scheme = self_structuring_scheme(p.dist, p.loss, beta, pilot_size=PILOT)
    kwargs = dict(n0=max(n_is // 8, 64), growth=2.0, num_stages=4, tolerance_scale=abs(exact) * 1e-3 * math.sqrt(n_is))

    run = build_retrospective_approximation(p.loss, scheme, p.theta_set, beta, **kwargs)

    def ra():
        res = run(key, None, 0.0)
        jax.block_until_ready(res.value)
        return res

    t0 = time.perf_counter()
    ra()
    first = time.perf_counter() - t0
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        res = ra()
        times.append(time.perf_counter() - t0)
    x = np.asarray(p.dist.sample(jax.random.fold_in(key, 1), n_saa))
    t0 = time.perf_counter()
    highs_value = highs_saa(p, x, beta)
    t_highs = time.perf_counter() - t0
    t_ra = float(np.median(times))
    return dict(returns=returns, beta=beta, n_is_final=res.stages[-1].n, n_saa=n_saa, ra_seconds=t_ra,
                ra_compile_seconds=first - t_ra, highs_seconds=t_highs, speedup=t_highs / t_ra,
                ra_rel_error=float(res.stages[-1].value) / exact - 1, highs_rel_error=highs_value / exact - 1,
                ra_true_rel_error=float(portfolio_var_cvar(p, res.theta, beta)[1]) / exact - 1)


def run_benchmark(size, out, only_a=False, betas=None, returns_list=("gaussian", "t")):
    cfg = dict(SIZES[size])
    if max(betas or cfg["betas"]) > MAX_BETA:
        raise ValueError(f"betas must be <= {MAX_BETA}")
    if betas is not None:
        cfg["betas"] = tuple(betas)
        cfg["b_betas"] = tuple(b for b in cfg["b_betas"] if b in betas)
        cfg["ra_betas"] = tuple(b for b in cfg["ra_betas"] if b in betas)
    key = jax.random.PRNGKey(0)
    rows, curves, clocks = [], [], []
    for returns in returns_list:
        # (a) in float32 (sampling and one sort), (b) and the exact optimum in float64.
        with jax.enable_x64(True):
            p64 = portfolio_problem(cfg["dim"], returns, dtype=jnp.float64)
        p32 = portfolio_problem(cfg["dim"], returns, dtype=jnp.float32)
        for beta in cfg["betas"]:
            with jax.enable_x64(True):
                theta, c_opt, var_opt = portfolio_optimum(p64, beta)
                c_theta = float(portfolio_var_cvar(p64, theta, beta)[1])
                theta, c_opt, var_opt = np.asarray(theta), float(c_opt), float(var_opt)
            do_b = beta in cfg["b_betas"] and not only_a
            for method in _methods(returns):
                jobs = [("a", c_theta, p32)] + ([("b", c_opt, p64)] if do_b else [])
                for part, exact, p in jobs:
                    with jax.enable_x64(part == "b"):
                        th = jnp.asarray(theta, p.mean.dtype)
                        params = choose_params(p, method, beta, jnp.asarray(var_opt, p.mean.dtype), th)
                        t0 = time.perf_counter()
                        if part == "a":
                            n, curve = part_a(p, th, beta, exact, method, params, cfg, key)
                        else:
                            n, curve = part_b(p, beta, exact, method, params, cfg, key)
                    row = dict(part=part, returns=returns, beta=beta, method=method, n=n, exact=exact,
                               n_max=cfg["a_max"] if part == "a" else cfg["b_max"], seconds=time.perf_counter() - t0,
                               is_param=np.asarray(params).tolist() if method == "self_structuring" else None)
                    rows.append(row)
                    curves.append(dict(row, curve=curve))
                    print(_fmt_row(row), flush=True)
            if beta in cfg["ra_betas"] and not only_a:
                n_is = _needed(rows, "b", returns, beta, "self_structuring")
                n_saa = _needed(rows, "b", returns, beta, "saa")
                if n_is is not None:
                    with jax.enable_x64(True):
                        clock = wall_clock(p64, returns, beta, n_is[0], n_saa[0], c_opt, jax.random.PRNGKey(5))
                    clock["n_is_is_lower_bound"], clock["n_saa_is_lower_bound"] = n_is[1], n_saa[1]
                    clocks.append(clock)
                    print(clock, flush=True)
    result = dict(size=size, config={k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
                  device=jax.devices()[0].device_kind, platform=jax.devices()[0].platform,
                  target_rel_error=TARGET, confidence=0.95, rows=rows, curves=curves, wall_clock=clocks)
    out.mkdir(parents=True, exist_ok=True)
    (out / "importance_sampling.json").write_text(json.dumps(result, indent=2))
    plot(curves, out / "importance_sampling.png")
    table = format_table(rows, clocks)
    (out / "importance_sampling.txt").write_text(table)
    return result, table


def _needed(rows, part, returns, beta, method):
    for r in rows:
        if (r["part"], r["returns"], r["beta"], r["method"]) == (part, returns, beta, method):
            return (r["n"], False) if r["n"] is not None else (r["n_max"], True)
    return None


def _fmt_n(row):
    return str(row["n"]) if row["n"] is not None else f">{row['n_max']}"


def _fmt_row(row):
    h = f" h={row['is_param']:.2f}" if row["is_param"] is not None else ""
    return f"({row['part']}) {row['returns']:8s} beta={row['beta']:.0e} {row['method']:16s} n={_fmt_n(row):>9s}{h}  [{row['seconds']:.1f}s]"


def format_table(rows, clocks):
    lines = [f"n for {TARGET:.0%} relative error with 95% confidence (doubling grid from {N_MIN}); ratio = n_SAA / n_IS",
             f"{'part':4s} {'returns':8s} {'beta':>6s} {'n_SAA':>9s} {'n_tilt':>9s} {'n_SS':>9s} {'SAA/tilt':>9s} {'SAA/SS':>9s}"]
    keys = sorted({(r["part"], r["returns"], r["beta"]) for r in rows}, key=lambda k: (k[0], k[1], -k[2]))
    for part, returns, beta in keys:
        by = {r["method"]: r for r in rows if (r["part"], r["returns"], r["beta"]) == (part, returns, beta)}

        def ratio(m):
            if m not in by or by[m]["n"] is None:
                return "n/a" if m not in by else "-"
            s = by["saa"]
            val = (s["n"] if s["n"] is not None else s["n_max"]) / by[m]["n"]
            return f"{'>' if s['n'] is None else ''}{val:.1f}"

        cell = lambda m: _fmt_n(by[m]) if m in by else "n/a"  # noqa: E731
        lines.append(f"({part})  {returns:8s} {beta:6.0e} {cell('saa'):>9s} {cell('tilting'):>9s} "
                     f"{cell('self_structuring'):>9s} {ratio('tilting'):>9s} {ratio('self_structuring'):>9s}")
    if clocks:
        lines.append("")
        lines.append("RA with self-structuring IS (JAX, final stage n_IS) vs SAA LP at n_SAA (scipy HiGHS)")
        lines.append(f"{'returns':8s} {'beta':>6s} {'n_IS':>7s} {'n_SAA':>8s} {'HiGHS/RA time':>14s} {'RA err':>8s} {'HiGHS err':>9s}")
        for c in clocks:
            lines.append(f"{c['returns']:8s} {c['beta']:6.0e} {c['n_is_final']:7d} {('>' if c['n_saa_is_lower_bound'] else '') + str(c['n_saa']):>8s} "
                         f"{c['speedup']:14.2f} {c['ra_true_rel_error']:8.4f} {c['highs_rel_error']:9.4f}")
    return "\n".join(lines)


def plot(curves, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(c["part"], c["returns"], c["beta"]) for c in curves}, key=lambda k: (k[0], k[1], -k[2]))
    cols = min(3, len(panels))
    rows_ = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(4.2 * cols, 3.3 * rows_), squeeze=False)
    colors = {"saa": "C0", "tilting": "C1", "self_structuring": "C2"}
    for ax, (part, returns, beta) in zip(axes.flat, panels):
        for c in curves:
            if (c["part"], c["returns"], c["beta"]) == (part, returns, beta):
                ns = [q["n"] for q in c["curve"]]
                ax.loglog(ns, [q["q95"] for q in c["curve"]], "o-", ms=3, color=colors[c["method"]], label=c["method"])
        ax.axhline(TARGET, color="k", lw=0.8, ls="--")
        ax.set_title(f"({part}) {returns}, beta={beta:.0e}", fontsize=9)
        ax.set_xlabel("n")
        ax.set_ylabel("95% quantile of |rel. error|")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=list(SIZES), default="small")
    parser.add_argument("--out", default="results/importance_sampling")
    parser.add_argument("--only-a", action="store_true", help="skip part (b) and the wall-clock comparison")
    parser.add_argument("--betas", type=float, nargs="*", help="subset of tail levels")
    args = parser.parse_args(argv)
    _, table = run_benchmark(args.size, pathlib.Path(args.out), args.only_a, args.betas)
    print(table)


if __name__ == "__main__":
    main()

"""Sample requirements of SAA vs importance sampling for tail-risk minimisation
(Deo & Murthy's tutorial headline, Example 1), and RA-with-IS vs SAA solved by HiGHS.

For the portfolio of :mod:`tailjax.stochopt.problems.portfolio` (Gaussian returns and
multivariate-t returns with nu = 3) and beta in {1e-2, 1e-3, 1e-4}: the number n of samples
needed so that, with 95% confidence (95th percentile over R >= 200 independent
replications, doubling grid of n),

  (a) the estimate of C_beta(theta*) at the fixed optimal portfolio theta* (min over u of
      the SAA / IS objective, one weighted sort) has relative error <= 1%;
  (b) the optimal value of the sample problem (solved to a 1e-5 relative certified gap by
      the JAX level method, vmapped over replications) has relative error <= 1% w.r.t. c_beta;
  (c) the decision of the sample problem is 1%-optimal: C_beta(theta_n) <= 1.01 c_beta,
      with C_beta(theta_n) the exact CVaR of the computed decision (closed form).

(a) and (b) are estimation targets; (c) is what an optimiser needs ("arrive at
risk-minimising decisions with high confidence"): its error is the suboptimality of the
decision, second order in the decision error, so it needs far fewer samples than (b).
Reference values are closed forms, (a) and (c), and a deterministic convex program solved
to 1e-9, (b). Part (a) runs in float32, (b)/(c) in float64.

Where a method does not reach the target on the grid (cap, or the run's time budget), the
table shows "~N": the CLT extrapolation n_last (q95_last / 0.01)^2 from the last grid point
for (a) and (b) (flagged, not measured; for plain SAA only from >= 20 expected tail
samples), and ">n_last" otherwise; "<=N" marks a target met at the first grid point. The
"CLT" ratio columns rescale every method's last grid point the same way (a finer answer
than the doubling grid's factor of 2). Cells that a time budget leaves no time for are
"skipped". The portfolio has 5 assets at every size (paper: longer grids, more levels).

Methods: SAA (plain samples), exponential tilting at the dominating point (Gaussian only:
the t law has no moment generating function), and self-structuring IS (T_h). The IS law
is chosen ONCE per configuration by the method's oracle at the exact (VaR, theta*); the
oracle's pilot samples (2048) are not counted in n.

Then the wall-clock of RA with self-structuring IS (Algorithm 1, oracle re-run at every
stage from a feasible start, final stage n_IS of (c)) against SAA with n_SAA of (c) samples
solved as one LP by scipy's HiGHS, side by side in this process: ratios are reported;
absolute seconds go to the JSON with the device kind (only GPU runs should be quoted).

    python -m benchmarks.seeds.importance_sampling --size small    # CPU: 10.5 min on a loaded 2-core box
    python -m benchmarks.seeds.importance_sampling --size paper    # GPU: 380 s budget, ~450 s in all
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
    # max_elems: samples x dims held per replication batch (the batch is the largest
    # divisor of reps that fits); budget: seconds for the whole run (None: unlimited), of
    # which clock_reserve goes to the RA-vs-HiGHS timings; the searches share the rest,
    # split evenly over the cells still to run, and a search that would overrun its share
    # stops and says so ("budget").
    "small": dict(dim=5, reps=200, betas=(1e-2, 1e-3, 1e-4), a_min=2**7, a_max=2**15, b_betas=(1e-2,), b_min=2**8, b_max=2**12,
                  max_elems=2**25, ra_betas=(1e-2,), budget=None, clock_reserve=0.0),
    "medium": dict(dim=5, reps=200, betas=(1e-2, 1e-3, 1e-4), a_min=2**7, a_max=2**20, b_betas=(1e-2, 1e-3), b_min=2**8,
                   b_max=2**15, max_elems=2**25, ra_betas=(1e-2,), budget=None, clock_reserve=0.0),
    "paper": dict(dim=5, reps=200, betas=(1e-2, 1e-3, 1e-4), a_min=2**10, a_max=2**22, b_betas=(1e-2, 1e-3),
                  b_min=2**10, b_max=2**16, max_elems=2**28, ra_betas=(1e-2,), budget=380.0, clock_reserve=80.0),
}
N_MIN = 2**7  # default first grid point of (a)
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


def _rel(est, exact):
    return np.abs(np.asarray(est) / exact - 1.0)


def _search(run_n, n_min, n_max, deadline=None, target=TARGET):
    """Doubling search over n for every metric ``run_n(n)`` returns ({name: errors (R,)}).

    Stops when every metric's 95th percentile is <= ``target``, past ``n_max``, or when the
    next point (predicted to cost 2.2x the last) would pass ``deadline``. Returns
    ``(found, curve, stop)``: first n per metric (None if not reached), the per-n q95/rmse
    of every metric, and why it stopped ("target", "cap" or "budget").
    """
    curve, found, n, last_cost = [], {}, n_min, 0.0
    while n <= n_max:
        if deadline is not None and curve and time.perf_counter() + 2.2 * last_cost > deadline:
            return found, curve, "budget"
        t0 = time.perf_counter()
        errs = run_n(n)
        last_cost = time.perf_counter() - t0
        point = dict(n=n, seconds=last_cost)
        for name, err in errs.items():
            q95 = float(np.quantile(err, 0.95))
            point[name] = dict(q95=q95, rmse=float(np.sqrt(np.mean(err**2))))
            if q95 <= target and found.get(name) is None:
                found[name] = n
            found.setdefault(name, None)
        curve.append(point)
        if all(v is not None for v in found.values()):
            return found, curve, "target"
        n *= 2
    return found, curve, "cap"


def _chunks(key, cfg, n):
    reps = cfg["reps"]
    fits = max(cfg["max_elems"] // (n * cfg["dim"]), 1)
    chunk = max(c for c in range(1, reps + 1) if reps % c == 0 and c <= fits)
    keys = jax.random.split(key, reps)
    return [keys[i : i + chunk] for i in range(0, reps, chunk)]


def part_a(p, theta, beta, exact, method, params, cfg, key, target=TARGET, deadline=None):
    """Estimate C_beta(theta) from n samples, reps times: ``({"a": n}, curve, stop)``."""
    b = jnp.asarray(beta, p.mean.dtype)

    def run_n(n):
        f = _compiled("estimate", p, method, n)
        est = np.concatenate([np.asarray(f(k, params, b, theta)) for k in _chunks(jax.random.fold_in(key, n), cfg, n)])
        return {"a": _rel(est, exact)}

    return _search(run_n, cfg.get("a_min", N_MIN), cfg["a_max"], deadline, target)


_SOLVERS: dict = {}


def _batched_solver(p, n):
    """One compiled program per (n, dim), shared by both return laws, every beta (traced)
    and every method: the sample problem's optimal value and decision, for a batch."""
    key = (n, p.dim)
    if key not in _SOLVERS:
        def one(z, log_lr, beta):
            res = solve_saa(p.loss, z, p.theta_set, beta, log_lr=log_lr, tol=1e-5, max_iter=150)
            return res.value, res.theta

        _SOLVERS[key] = jax.jit(jax.vmap(one, in_axes=(0, 0, None)))
    return _SOLVERS[key]


def part_bc(p, beta, exact, method, params, cfg, key, deadline=None):
    """Solve the SAA / IS sample problem from n samples, reps times: (b) its optimal value
    vs c_beta, (c) the exact CVaR of its decision vs c_beta (suboptimality)."""
    b = jnp.asarray(beta, p.mean.dtype)
    theta0 = p.theta_set.feasible_point(p.mean.dtype)
    true_cvar = jax.jit(jax.vmap(lambda th: portfolio_var_cvar(p, th, beta)[1]))

    def run_n(n):
        draw, solve = _compiled("draw", p, method, n), _batched_solver(p, n)
        vals, true = [], []
        for k in _chunks(jax.random.fold_in(key, n), cfg, n):
            z, log_lr = draw(k, params, b, theta0)
            v, theta = solve(z, log_lr, b)
            vals.append(np.asarray(v))
            true.append(np.asarray(true_cvar(theta)))
        return {"b": _rel(np.concatenate(vals), exact), "c": np.concatenate(true) / exact - 1.0}

    return _search(run_n, cfg["b_min"], cfg["b_max"], deadline)


def highs_saa(p, x, beta):
    """SAA of the CVaR problem as one LP (theta, u, z), solved by scipy's HiGHS: (value, theta)."""
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
    return res.fun, res.x[:d]


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
    highs_value, highs_theta = highs_saa(p, x, beta)
    t_highs = time.perf_counter() - t0
    t_ra = float(np.median(times))
    true = lambda th: float(portfolio_var_cvar(p, jnp.asarray(th, p.mean.dtype), beta)[1]) / exact - 1  # noqa: E731
    return dict(returns=returns, beta=beta, n_is_final=res.stages[-1].n, n_saa=n_saa, ra_seconds=t_ra,
                ra_compile_seconds=first - t_ra, highs_seconds=t_highs, speedup=t_highs / t_ra,
                ra_rel_error=float(res.stages[-1].value) / exact - 1, highs_rel_error=highs_value / exact - 1,
                ra_true_rel_error=true(res.theta), highs_true_rel_error=true(highs_theta))


def _extrapolate(curve, metric, target=TARGET):
    """CLT rescaling n_last (q95_last / target)^2 of the last grid point: the n at which the
    95% quantile would equal the target if it falls like n^(-1/2) (an extrapolation where
    the grid stopped short, a refinement of the doubling grid's answer otherwise)."""
    last = curve[-1]
    return int(math.ceil(last["n"] * (last[metric]["q95"] / target) ** 2))


def run_benchmark(size, out, only_a=False, betas=None, returns_list=("gaussian", "t"), budget=None):
    cfg = dict(SIZES[size])
    if budget is not None:
        cfg["budget"] = budget
    if max(betas or cfg["betas"]) > MAX_BETA:
        raise ValueError(f"betas must be <= {MAX_BETA}")
    if betas is not None:
        cfg["betas"] = tuple(betas)
        cfg["b_betas"] = tuple(b for b in cfg["b_betas"] if b in betas)
        cfg["ra_betas"] = tuple(b for b in cfg["ra_betas"] if b in betas)
    key = jax.random.PRNGKey(0)
    # beta outer, so a time budget cuts the rarest levels first
    cells = [(r, b, m, part) for b in cfg["betas"] for r in returns_list for m in _methods(r)
             for part in ("a", "bc") if part == "a" or (b in cfg["b_betas"] and not only_a)]
    t_start = time.perf_counter()
    rows, curves, clocks, optima = [], [], [], {}
    # (a) in float32 (sampling and one sort), (b)/(c) and the exact optimum in float64.
    problems = {}
    for returns in returns_list:
        with jax.enable_x64(True):
            p64 = portfolio_problem(cfg["dim"], returns, dtype=jnp.float64)
        problems[returns] = (p64, portfolio_problem(cfg["dim"], returns, dtype=jnp.float32))
    for beta in cfg["betas"]:
        for returns in returns_list:
            p64, p32 = problems[returns]
            with jax.enable_x64(True):
                theta, c_opt, var_opt = portfolio_optimum(p64, beta)
                c_theta = float(portfolio_var_cvar(p64, theta, beta)[1])
                theta, c_opt, var_opt = np.asarray(theta), float(c_opt), float(var_opt)
            for method in _methods(returns):
                for part in ("a", "bc"):
                    if (returns, beta, method, part) not in cells:
                        continue
                    deadline = None
                    if cfg["budget"] is not None:
                        left = cfg["budget"] - cfg["clock_reserve"] - (time.perf_counter() - t_start)
                        if left <= 0:
                            for metric in ("a",) if part == "a" else ("b", "c"):
                                row = dict(part=metric, returns=returns, beta=beta, method=method, n=None, n_last=None,
                                           stop="skipped", exact=None, seconds=0.0, n_clt=None, n_extrapolated=None,
                                           is_param=None)
                                rows.append(row)
                                print(_fmt_row(row), flush=True)
                            continue
                        deadline = time.perf_counter() + left / (len(cells) - cells.index((returns, beta, method, part)))
                    p = p32 if part == "a" else p64
                    with jax.enable_x64(part == "bc"):
                        th = jnp.asarray(theta, p.mean.dtype)
                        params = choose_params(p, method, beta, jnp.asarray(var_opt, p.mean.dtype), th)
                        t0 = time.perf_counter()
                        if part == "a":
                            found, curve, stop = part_a(p, th, beta, c_theta, method, params, cfg, key, deadline=deadline)
                        else:
                            found, curve, stop = part_bc(p, beta, c_opt, method, params, cfg, key, deadline)
                    seconds = time.perf_counter() - t0
                    for metric, n in found.items():
                        row = dict(part=metric, returns=returns, beta=beta, method=method, n=n, n_last=curve[-1]["n"],
                                   n_first=curve[0]["n"],
                                   stop=stop, exact=c_theta if metric == "a" else c_opt, seconds=seconds,
                                   n_clt=None if metric == "c" else _extrapolate(curve, metric),
                                   is_param=np.asarray(params).tolist() if method == "self_structuring" else None)
                        # extrapolate plain SAA only from >= 20 expected tail samples (CLT regime)
                        ok = method != "saa" or curve[-1]["n"] * beta >= 20
                        row["n_extrapolated"] = row["n_clt"] if n is None and ok else None
                        rows.append(row)
                        curves.append(dict(row, curve=[dict(n=q["n"], seconds=q["seconds"], **q[metric]) for q in curve]))
                        print(_fmt_row(row), flush=True)
            optima[returns, beta] = c_opt
    # RA-with-IS vs HiGHS timings last, in the time reserved for them
    for (returns, beta), c_opt in optima.items():
        if beta not in cfg["ra_betas"] or only_a:
            continue
        n_is = _needed(rows, "c", returns, beta, "self_structuring")
        n_saa = _needed(rows, "c", returns, beta, "saa")
        if cfg["budget"] is not None and time.perf_counter() - t_start > cfg["budget"] - 30.0:
            print(f"RA vs HiGHS timing for {returns} beta={beta:.0e} skipped: time budget spent", flush=True)
        elif n_is is not None and n_saa is not None:
            with jax.enable_x64(True):
                clock = wall_clock(problems[returns][0], returns, beta, n_is[0], n_saa[0], c_opt, jax.random.PRNGKey(5))
            clock["n_is_is_lower_bound"], clock["n_saa_is_lower_bound"] = n_is[1], n_saa[1]
            clocks.append(clock)
            print(clock, flush=True)
    result = dict(size=size, config={k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
                  device=jax.devices()[0].device_kind, platform=jax.devices()[0].platform,
                  target_rel_error=TARGET, confidence=0.95, total_seconds=time.perf_counter() - t_start,
                  rows=rows, curves=curves, wall_clock=clocks)
    out.mkdir(parents=True, exist_ok=True)
    (out / "importance_sampling.json").write_text(json.dumps(result, indent=2))
    plot(curves, out / "importance_sampling.png")
    table = format_table(rows, clocks)
    (out / "importance_sampling.txt").write_text(table)
    return result, table


def _needed(rows, part, returns, beta, method):
    for r in rows:
        if (r["part"], r["returns"], r["beta"], r["method"]) == (part, returns, beta, method):
            if r["stop"] == "skipped":
                return None
            return (r["n"], False) if r["n"] is not None else (r["n_last"], True)
    return None


def _n_value(row):
    """(n, flag): measured n, or the extrapolation ("~"), or the last grid point (">")."""
    if row["stop"] == "skipped":
        return 0, "skip"
    if row["n"] is not None:
        return row["n"], "<=" if row["n"] == row.get("n_first") else ""
    if row["n_extrapolated"] is not None:
        return row["n_extrapolated"], "~"
    return row["n_last"], ">"


def _fmt_n(row):
    n, flag = _n_value(row)
    return "skipped" if flag == "skip" else f"{flag}{n}"


def _fmt_row(row):
    h = f" h={row['is_param']:.2f}" if row["is_param"] is not None else ""
    return (f"({row['part']}) {row['returns']:8s} beta={row['beta']:.0e} {row['method']:16s} n={_fmt_n(row):>9s}{h}"
            f"  [{row['stop']}, {row['seconds']:.1f}s]")


def _ratio(saa, other):
    (ns, fs), (no, fo) = _n_value(saa), _n_value(other)
    if "skip" in (fs, fo):
        return "-"
    if fo == ">":
        return "-" if fs == ">" else f"<{ns / no:.1f}"
    if fs == ">":
        return "-" if fo == "~" else f">{ns / no:.1f}"
    if fo == "<=":
        return "-" if fs in ("~", "<=") else f">={ns / no:.1f}"
    return f"{'~' if '~' in fs + fo else ''}{ns / no:.1f}"


def _clt_ratio(by, m):
    saa = by["saa"]
    if m not in by or saa.get("n_clt") is None or by[m].get("n_clt") is None or (
            saa["n"] is None and saa["n_extrapolated"] is None):
        return "n/a" if m not in by else "-"
    return f"{by['saa']['n_clt'] / by[m]['n_clt']:.1f}"


def format_table(rows, clocks):
    lines = [f"n for {TARGET:.0%} relative error with 95% confidence (doubling grid); ratio = n_SAA / n_IS",
             "(a) CVaR at theta*  (b) optimal value  (c) true CVaR of the sample problem's decision <= 1.01 c_beta",
             "~N: CLT extrapolation from the last grid point (not measured; plain SAA only from >= 20 expected tail"
             " samples); >N: not reached by grid point N; <=N: reached at the first grid point",
             "CLT ratios: every method's n rescaled to the target by n (q95/0.01)^2 at its last grid point",
             f"{'part':4s} {'returns':8s} {'beta':>6s} {'n_SAA':>9s} {'n_tilt':>9s} {'n_SS':>9s} {'SAA/tilt':>9s} {'SAA/SS':>9s}"
             f" {'CLT SAA/tilt':>13s} {'CLT SAA/SS':>11s}"]
    keys = sorted({(r["part"], r["returns"], r["beta"]) for r in rows}, key=lambda k: (k[0], k[1], -k[2]))
    for part, returns, beta in keys:
        by = {r["method"]: r for r in rows if (r["part"], r["returns"], r["beta"]) == (part, returns, beta)}
        cell = lambda m: _fmt_n(by[m]) if m in by else "n/a"  # noqa: E731
        ratio = lambda m: _ratio(by["saa"], by[m]) if m in by else "n/a"  # noqa: E731
        lines.append(f"({part})  {returns:8s} {beta:6.0e} {cell('saa'):>9s} {cell('tilting'):>9s} "
                     f"{cell('self_structuring'):>9s} {ratio('tilting'):>9s} {ratio('self_structuring'):>9s}"
                     f" {_clt_ratio(by, 'tilting'):>13s} {_clt_ratio(by, 'self_structuring'):>11s}")
    if clocks:
        lines.append("")
        lines.append("RA with self-structuring IS (JAX, final stage n_IS of (c)) vs SAA LP at n_SAA of (c) (scipy HiGHS);")
        lines.append("errors: exact CVaR of the returned decision / c_beta - 1")
        lines.append(f"{'returns':8s} {'beta':>6s} {'n_IS':>7s} {'n_SAA':>8s} {'HiGHS/RA time':>14s} {'RA err':>8s} {'HiGHS err':>9s}")
        for c in clocks:
            lines.append(f"{c['returns']:8s} {c['beta']:6.0e} {c['n_is_final']:7d} {('>' if c['n_saa_is_lower_bound'] else '') + str(c['n_saa']):>8s} "
                         f"{c['speedup']:14.2f} {c['ra_true_rel_error']:8.4f} {c['highs_true_rel_error']:9.4f}")
    return "\n".join(lines)


def plot(curves, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

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
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_title(f"({part}) {returns}, beta={beta:.0e}", fontsize=9)
        ax.set_xlabel("n")
        ax.set_ylabel("95% quantile of " + ("suboptimality" if part == "c" else "|rel. error|"))
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
    parser.add_argument("--only-a", action="store_true", help="skip parts (b), (c) and the wall-clock comparison")
    parser.add_argument("--betas", type=float, nargs="*", help="subset of tail levels")
    parser.add_argument("--budget", type=float, help="seconds for all searches (overrides the size's budget)")
    args = parser.parse_args(argv)
    _, table = run_benchmark(args.size, pathlib.Path(args.out), args.only_a, args.betas, budget=args.budget)
    print(table)


if __name__ == "__main__":
    main()

"""Set-up of the importance-sampling benchmarks (Deo & Murthy's tutorial, Example 1).

Asymptotic variances: :func:`saa_asymptotic_variance` (closed form) and
:func:`is_asymptotic_variance` (from 2^20 or more draws, batch-means interval) of the CVaR
estimator at a fixed decision; by the tutorial's Theorem 4 the optimal value of the sample
problem has the same asymptotic variance at the (unique) optimum theta*.

The methods compared (plain SAA, exponential tilting at the dominating point, the
self-structuring transform), each an :class:`tailjax.importance.ISScheme`; the estimate of
CVaR(theta) from n draws of a scheme, compiled once per (law, method, n) and shared by every
tail level (``tail_prob`` traced); and the doubling search for the n at which the 95th
percentile of the relative error over replications meets a target. Used by
``benchmarks/seeds/importance_sampling.py`` and ``benchmarks/quick/b_importance.py``.
"""

from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _harness as harness
from tailjax.importance import (
    ISScheme,
    default_h_grid,
    gaussian_tilting_scheme,
    is_var_cvar,
    plain_scheme,
    sample_losses,
    self_structuring_scheme,
)

PILOT = 2048  # pilot samples of the self-structuring oracle (not counted in n)
MAX_TAIL_PROB = 1e-2  # largest tail level: plain SAA selects the top floor(n 1e-2) + 1 losses
TARGET = 0.01


class Method(NamedTuple):
    scheme: Callable[[Any, Any], ISScheme]  # (problem, tail_prob) -> scheme
    weighted: bool  # False: plain samples, the SAA estimator (no likelihood ratios)


def _tilting(problem, tail_prob):
    dim, dtype = problem.dim, problem.mean.dtype
    return gaussian_tilting_scheme(jnp.zeros(dim, dtype), jnp.eye(dim, dtype=dtype), problem.pieces)


def _self_structuring(problem, tail_prob):
    h_grid = None if isinstance(tail_prob, jax.core.Tracer) else default_h_grid(tail_prob)
    return self_structuring_scheme(problem.dist, problem.loss, tail_prob, h_grid=h_grid, pilot_size=PILOT)


METHODS = {
    "saa": Method(lambda problem, tail_prob: plain_scheme(problem.dist), weighted=False),
    "tilting": Method(_tilting, weighted=True),  # Gaussian returns only (needs an MGF)
    "self_structuring": Method(_self_structuring, weighted=True),
}


def methods(returns: str) -> tuple[str, ...]:
    """The methods that apply to ``returns`` ("gaussian" or "t": no tilting without an MGF)."""
    return tuple(m for m in METHODS if returns == "gaussian" or m != "tilting")


def choose_params(problem, method: str, tail_prob: float, var, theta):
    """The IS parameter of ``method`` at (u, theta) = (VaR, theta*), by its scheme's oracle."""
    scheme = METHODS[method].scheme(problem, tail_prob)
    return jax.jit(scheme.choose)(jax.random.PRNGKey(1), var, theta)


_PROGRAMS: dict = {}


def _program(kind, problem, method, n):
    """One jitted program per (kind, law, method, n); ``tail_prob`` and the IS parameter
    are traced, so every tail level shares it."""
    cache_key = (kind, problem.dist.sample, method, n)  # the sampler identifies the law
    if cache_key in _PROGRAMS:
        return _PROGRAMS[cache_key]
    entry = METHODS[method]

    def draw(key, params, tail_prob):
        return entry.scheme(problem, tail_prob).sample(key, params, n)

    def estimate(key, params, tail_prob, theta):
        z, log_lr = draw(key, params, tail_prob)
        losses = sample_losses(problem.loss, z, theta)
        if entry.weighted:
            return is_var_cvar(losses, log_lr, tail_prob)[1]
        return is_var_cvar(losses, None, tail_prob, max_tail_prob=MAX_TAIL_PROB)[1]

    if kind == "estimate":
        fn = jax.vmap(estimate, in_axes=(0, None, None, None))
    else:
        fn = jax.vmap(draw, in_axes=(0, None, None))
    _PROGRAMS[cache_key] = jax.jit(fn)
    return _PROGRAMS[cache_key]


def cvar_estimator(problem, method: str, n: int):
    """``f(keys: (R,), params, tail_prob, theta) -> (R,)`` CVaR estimates from n draws each."""
    return _program("estimate", problem, method, n)


def sampler(problem, method: str, n: int):
    """``f(keys: (R,), params, tail_prob) -> (z: (R, n, d), log_lr: (R, n))``."""
    return _program("draw", problem, method, n)


def key_chunks(key, reps: int, max_elems: int, n: int, dim: int) -> list:
    """``reps`` keys from ``key`` in equal chunks of at most ``max_elems / (n dim)`` keys
    (the largest divisor of ``reps`` that fits)."""
    fits = max(max_elems // (n * dim), 1)
    chunk = max(c for c in range(1, reps + 1) if reps % c == 0 and c <= fits)
    keys = jax.random.split(key, reps)
    return [keys[i: i + chunk] for i in range(0, reps, chunk)]


def relative_error(estimates, exact: float) -> np.ndarray:
    return np.abs(np.asarray(estimates) / exact - 1.0)


def doubling_search(run_n, n_min: int, n_max: int, deadline: float | None = None, target: float = TARGET):
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


def estimate_search(problem, theta, tail_prob: float, exact: float, method: str, params, *, reps: int,
                    n_min: int, n_max: int, max_elems: int, key, target: float = TARGET, deadline=None):
    """Part (a): estimate CVaR(theta) from n draws, ``reps`` times per n, on a doubling grid
    until the 95th percentile of the relative error is <= ``target``: ``({"a": n}, curve,
    stop)`` as in :func:`doubling_search`."""
    if tail_prob > MAX_TAIL_PROB:
        raise ValueError(f"tail_prob must be <= {MAX_TAIL_PROB}, got {tail_prob}")
    level = jnp.asarray(tail_prob, problem.mean.dtype)

    def run_n(n):
        f = cvar_estimator(problem, method, n)
        chunks = key_chunks(jax.random.fold_in(key, n), reps, max_elems, n, problem.dim)
        return {"a": relative_error(np.concatenate([np.asarray(f(k, params, level, theta)) for k in chunks]), exact)}

    return doubling_search(run_n, n_min, n_max, deadline, target)


COLORS = {"saa": "C0", "tilting": "C1", "self_structuring": "C2"}


def plot_curves(curves: list[dict], target: float, out, name: str):
    """One panel per (part, returns, tail_prob): the 95% quantile of the error against n;
    saved as ``out/name.png``."""
    import matplotlib.ticker

    panels = sorted({(c["part"], c["returns"], c["tail_prob"]) for c in curves}, key=lambda k: (k[0], k[1], -k[2]))
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = harness.figure(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    for ax, (part, returns, tail_prob) in zip(axes.flat, panels):
        for c in curves:
            if (c["part"], c["returns"], c["tail_prob"]) == (part, returns, tail_prob):
                ns = [q["n"] for q in c["curve"]]
                ax.loglog(ns, [q["q95"] for q in c["curve"]], "o-", ms=3, color=COLORS[c["method"]], label=c["method"])
        ax.axhline(target, color="k", lw=0.8, ls="--")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_title(f"({part}) {returns}, tail_prob={tail_prob:.0e}", fontsize=9)
        ax.set_xlabel("n")
        ax.set_ylabel("95% quantile of " + ("suboptimality" if part == "c" else "|rel. error|"))
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    return harness.save_figure(fig, out, name)


# ---------------------------------------------------------------- asymptotic variances

Z95 = 1.959963984540054  # the 95% two-sided normal quantile: q95 of |N(0, s^2)| is Z95 s


def saa_asymptotic_variance(problem, theta, tail_prob: float) -> float:
    """sigma^2 with sqrt(n) (CVaR_n - CVaR) -> N(0, sigma^2) for plain SAA at ``theta``, in
    closed form: l(X, theta) = -theta^T mu + s Y with s = ||L^T theta|| and Y standard normal
    or t_nu, so sigma^2 = s^2 Var((Y - q)_+) / beta^2 with q the standard VaR (the VaR's own
    error does not enter at first order). Gaussian moments in closed form, t by quadrature."""
    from scipy import stats

    from tailjax.stochopt.problems import standard_tail

    with jax.enable_x64(True):
        q = float(standard_tail(tail_prob, problem.nu, jnp.float64)[0])
        s = float(np.linalg.norm(np.asarray(problem.chol, np.float64).T @ np.asarray(theta, np.float64)))
    if problem.nu is None:
        phi = float(stats.norm.pdf(q))
        m1, m2 = phi - q * tail_prob, (1 + q * q) * tail_prob - q * phi
    else:
        law = stats.t(problem.nu)
        m1 = law.expect(lambda y: y - q, lb=q, epsabs=1e-14, epsrel=1e-12)
        m2 = law.expect(lambda y: (y - q) ** 2, lb=q, epsabs=1e-14, epsrel=1e-12)
    return s * s * (m2 - m1 * m1) / tail_prob**2


def is_asymptotic_variance(problem, theta, var: float, tail_prob: float, method: str, params, key, *,
                           n_total: int = 2**20, batches: int = 32) -> dict:
    """sigma^2 of the IS (or plain, ``method="saa"``) CVaR estimator at (VaR, theta):
    Var_g[(l(Z, theta) - VaR)_+ L(Z)] / beta^2 from ``n_total`` draws of the method's law,
    with a 95% batch-means interval (``batches`` batches, Student-t quantile)."""
    from scipy import stats

    m = n_total // batches
    draw = sampler(problem, method, m)
    level = jnp.asarray(tail_prob, problem.mean.dtype)

    @jax.jit
    def batch_moments(keys):
        z, log_lr = draw(keys, params, level)  # (B, m, d), (B, m)
        losses = jax.vmap(lambda zz: sample_losses(problem.loss, zz, theta))(z)
        y = jnp.maximum(losses - var, 0.0) * jnp.exp(log_lr)
        return jnp.mean(y, axis=1), jnp.mean(y * y, axis=1), jnp.max(y * y, axis=1)

    keys = jax.random.split(key, batches)
    means, squares, largest = (np.asarray(a, np.float64) for a in batch_moments(keys))
    per_batch = (squares - means**2) * m / (m - 1) / tail_prob**2
    mean = float(np.mean(squares) - np.mean(means) ** 2) / tail_prob**2
    half = float(stats.t.ppf(0.975, batches - 1) * np.std(per_batch, ddof=1) / np.sqrt(batches))
    # the largest single draw's share of sum y^2: near 1 flags a second moment carried by one
    # draw (heavy-tailed weights), where the interval is not to be trusted
    share = float(np.max(largest) / (np.sum(squares) * m))
    return dict(variance=mean, ci=(mean - half, mean + half), n_total=m * batches, batches=batches,
                max_share=share)

"""Exact CVaR evaluation where p(c|x) is Gaussian: closed-form CVaR and the exact
CVaR-optimal decision (a second-order-cone programme).

For ``c ~ N(mu, Sigma)`` the realised cost of a fixed decision w,
``f(c, w) = sign c^T w + w^T P w`` (:class:`~tailjax.dfl.DecisionProblem`), is Gaussian with
mean ``m = sign mu^T w + w^T P w`` and standard deviation ``s = sqrt(w^T Sigma w)``, so

    CVaR_a[f] = m + kappa(a) s,     kappa(a) = phi(Phi^{-1}(1 - a)) / a     (kappa(1) = 0),

with ``a = tail_prob`` (the paper's alpha). The CVaR-optimal decision

    w* = argmin_{w in W}  sign mu^T w + w^T P w + kappa sqrt(w^T Sigma w)

is a second-order-cone programme. :func:`gaussian_cvar_decision` solves it through the
variational form ``sqrt(q) = min_{t > 0} q / (2 t) + t / 2``: for fixed ``t`` the inner
problem is the QP ``min sign mu^T w + w^T (P + kappa Sigma / (2 t)) w`` (the interior-point
solver of :mod:`tailjax.layers`), and the optimal ``t`` is the root of the increasing
``log t - log sqrt(w_t^T Sigma w_t)`` (the sign of the derivative of the convex partial
minimum), found in ``log t`` by regula falsi (Illinois), one QP per step, in a bracket
that each QP also tightens (``log sqrt(w_t^T Sigma w_t)`` is nondecreasing in ``t``, so its
value at any ``t`` bounds the root), with bisection as a safeguard. Run it in float64
(:func:`gaussian_regret_reference` does) for a decision accurate to about 1e-8 in CVaR; the
test suite checks it against scipy.

:func:`gaussian_regret_reference` caches the means and w* of the test points, and
:func:`tailjax.dfl.cvar_regret` then scores any decisions exactly (eq. (9): the CVaR of the
Gaussian difference ``f(c, w_hat) - f(c, w*)``; or the difference of the two CVaRs) with no
sampling error and no in-sample bias.
"""

from __future__ import annotations

import functools
from statistics import NormalDist
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import (
    check_int, check_open_unit, check_positive, is_concrete, nan_where, traced_out_of_range,
)
from tailjax.dfl.problems.base import DecisionProblem, point_decision_of

__all__ = [
    "cvar_multiplier",
    "gaussian_cvar",
    "gaussian_cvar_decision",
    "kappa_decision",
    "GaussianReference",
    "gaussian_regret_reference",
    "gaussian_regret",
]


def cvar_multiplier(tail_prob: float) -> float:
    """kappa(a) = phi(Phi^{-1}(1 - a)) / a: CVaR_a of N(0, 1) (upper tail); 0 at a = 1.

    A float for a concrete ``tail_prob``; for a traced one an array, NaN outside (0, 1].
    """
    check_open_unit(tail_prob, "tail_prob", closed_right=True)
    if not is_concrete(tail_prob):
        a = jnp.asarray(tail_prob, jnp.result_type(tail_prob, float))
        z = jax.scipy.special.ndtri(1.0 - a)
        kappa = jnp.where(a == 1.0, 0.0, jnp.exp(-0.5 * z**2) / (np.sqrt(2.0 * np.pi) * a))
        return nan_where(traced_out_of_range(a, high_closed=True), kappa)
    a = float(tail_prob)
    if a == 1.0:
        return 0.0
    z = NormalDist().inv_cdf(1.0 - a)
    return NormalDist().pdf(z) / a


def _check_gaussian(problem, mean, cov):
    d = problem.dim
    if jnp.shape(mean) != (d,):
        raise ValueError(f"mean must have shape ({d},) (one instance; vmap over instances), got {jnp.shape(mean)}")
    if jnp.shape(cov) != (d, d):
        raise ValueError(f"cov must have shape ({d}, {d}), got {jnp.shape(cov)}")


def gaussian_cvar(
    problem: DecisionProblem,
    mean: Float[ArrayLike, " d"],
    cov: Float[ArrayLike, "d d"],
    w: Float[ArrayLike, " d"],
    tail_prob: float,
) -> Float[Array, ""]:
    """CVaR_{tail_prob}[f(c, w)] exactly for ``c ~ N(mean, cov)`` (one instance; vmap)."""
    _check_gaussian(problem, mean, cov)
    if jnp.shape(w) != (problem.dim,):
        raise ValueError(f"w must have shape ({problem.dim},) (one decision), got {jnp.shape(w)}")
    kappa = cvar_multiplier(tail_prob)
    mean, w = jnp.asarray(mean), jnp.asarray(w)
    dtype = jnp.result_type(mean.dtype, w.dtype, float)
    mean, w, cov = mean.astype(dtype), w.astype(dtype), jnp.asarray(cov).astype(dtype)
    m = problem.sign.astype(dtype) * (mean @ w) + w @ (problem.quadratic.astype(dtype) @ w)
    return m + kappa * jnp.sqrt(jnp.maximum(w @ (cov @ w), 0.0))


def gaussian_cvar_decision(
    problem: DecisionProblem,
    mean: Float[ArrayLike, " d"],
    cov: Float[ArrayLike, "d d"],
    tail_prob: float,
    *,
    root_steps: int = 80,
    root_tol: float = 1e-10,
    iterations: int = 60,
) -> Float[Array, " d"]:
    """The exact CVaR-optimal decision for ``c ~ N(mean, cov)`` (module docstring); one
    instance, ``jax.vmap`` over means. At most ``root_steps`` (>= 1) steps of the root search
    in ``log t``, which stops when its bracket is narrower than ``root_tol`` (or a few ulps);
    ``iterations`` interior-point iterations per QP. ``tail_prob`` must be concrete
    (a Python float). Not differentiated (an evaluation tool; :func:`kappa_decision` is the
    differentiable solver).
    """
    _check_gaussian(problem, mean, cov)
    if not is_concrete(tail_prob):
        raise TypeError("tail_prob must be concrete (a Python float): the decision at tail_prob = 1 "
                        "is a different problem")
    return jax.lax.stop_gradient(kappa_decision(problem, mean, cov, cvar_multiplier(tail_prob),
                                                root_steps=root_steps, root_tol=root_tol, iterations=iterations))


def kappa_decision(
    problem: DecisionProblem,
    mean: Float[ArrayLike, " d"],
    cov: Float[ArrayLike, "d d"],
    kappa: float,
    *,
    root_steps: int = 80,
    root_tol: float = 1e-10,
    iterations: int = 60,
) -> Float[Array, " d"]:
    """``argmin_{w in W} sign mean^T w + w^T P w + kappa sqrt(w^T cov w)`` for a concrete
    ``kappa >= 0`` (module docstring; one instance, ``jax.vmap`` over means), differentiable
    in ``mean``, ``cov`` and the problem's arrays (reverse mode): the root t* of
    ``t - sqrt(w_t^T cov w_t)`` is differentiated implicitly, the QP at t* through its own
    implicit gradient. ``kappa = 0`` is the point decision (``reg = 0``). ``cov`` must be
    positive definite for the gradient of an LP's decision to exist."""
    _check_gaussian(problem, mean, cov)
    check_positive(kappa, "kappa", allow_zero=True)
    root_steps = check_int(root_steps, "root_steps", minimum=1)
    iterations = check_int(iterations, "iterations", minimum=1)
    check_positive(root_tol, "root_tol")
    mean = jnp.asarray(mean)
    dtype = jnp.result_type(mean.dtype, problem.polytope.lower.dtype, float)
    prob = jax.tree_util.tree_map(lambda a: jnp.asarray(a).astype(dtype), problem)
    mean, cov = mean.astype(dtype), jnp.asarray(cov).astype(dtype)
    if float(kappa) == 0.0:
        return point_decision_of(prob, mean, reg=0.0, iterations=iterations)
    return _kappa_socp(float(kappa), root_steps, float(root_tol), iterations, prob, mean, cov)


def _socp_qp(kappa, iterations, prob, mean, cov, log_t):
    quad = prob.quadratic + (kappa / (2.0 * jnp.exp(log_t))) * cov
    return point_decision_of(prob._replace(quadratic=quad), mean, reg=0.0, iterations=iterations)


def _socp_qp_and_gap(kappa, iterations, prob, mean, cov, log_t):
    """(w_t, log t - log sqrt(w_t^T cov w_t)) at t = exp(log_t): the gap increases in log t
    with slope about 1 away from a change of active set, and its root is log t*."""
    w = _socp_qp(kappa, iterations, prob, mean, cov, log_t)
    q = jnp.maximum(w @ (cov @ w), jnp.finfo(w.dtype).tiny)
    return w, log_t - 0.5 * jnp.log(q)


def _socp_root(kappa, root_steps, root_tol, iterations, prob, mean, cov):
    return _socp_root_search(kappa, root_steps, root_tol, iterations, prob, mean, cov)[0]


def _socp_root_search(kappa, root_steps, root_tol, iterations, prob, mean, cov):
    """(log t*, the QPs it took after the two at the bracket's ends). log t* in the bracket
    [2 top / 1e40, 2 top] of log t (its lower end raised to 2 top sqrt(tiny) in float32),
    top bounding sqrt(w^T cov w) on the box: at most ``root_steps`` QPs after the two at its
    ends, until the bracket is narrower than ``root_tol`` (or a few ulps of log t).

    phi(u) = log sqrt(w_u^T cov w_u) is nondecreasing in u (a heavier penalty on w^T cov w
    never raises it), so a QP at u with gap(u) = u - phi(u) > 0 puts the root u* = phi(u*) at
    or below phi(u), and one with gap < 0 at or above it: every QP moves an end of the
    bracket [lo, hi] to phi(u), past u. The steps are regula falsi (Illinois) through the
    last QPs on either side of the root, kept inside [lo, hi], and a bisection of [lo, hi]
    where three steps did not halve it."""
    poly = prob.polytope
    radius = jnp.sum(jnp.maximum(jnp.abs(poly.lower), jnp.abs(poly.upper)) ** 2)
    top = jnp.sqrt(jnp.max(jnp.linalg.eigvalsh(0.5 * (cov + cov.T))) * radius)
    hi0 = jnp.log(jnp.maximum(top, jnp.finfo(cov.dtype).tiny) * 2.0)
    lo0 = hi0 - jnp.asarray(min(40.0 * np.log(10.0), -0.5 * np.log(jnp.finfo(cov.dtype).tiny)), cov.dtype)
    gap = lambda u: _socp_qp_and_gap(kappa, iterations, prob, mean, cov, u)[1]  # noqa: E731
    f_lo, f_hi = gap(lo0), gap(hi0)
    eps = jnp.finfo(cov.dtype).eps
    searching = (f_lo < 0) & (f_hi > 0)

    def cond(s):
        lo, hi, *_, steps = s
        tol = jnp.maximum(root_tol, 4 * eps * jnp.maximum(jnp.abs(lo), jnp.abs(hi)))
        return searching & (steps < root_steps) & (hi - lo > tol)

    def body(s):
        # (a, f_a), (b, f_b): the last QPs below and above the root; last: the side moved last
        lo, hi, a, f_a, b, f_b, last, widths, steps = s  # widths: [lo, hi]'s at the last 3 steps
        width = hi - lo
        falsi = b - f_b * (b - a) / (f_b - f_a)
        u = jnp.where(width > 0.5 * widths[0], 0.5 * (lo + hi), falsi)
        u = jnp.clip(u, lo + 1e-3 * width, hi - 1e-3 * width)
        f = gap(u)
        up = f > 0  # the root is at or below phi(u) < u
        # Illinois: an end kept twice in a row has its value halved
        f_a = jnp.where(up, jnp.where(last == 1, 0.5 * f_a, f_a), f)
        f_b = jnp.where(up, f, jnp.where(last == -1, 0.5 * f_b, f_b))
        a, b = jnp.where(up, a, u), jnp.where(up, u, b)
        # an inexact QP may put phi(u) past the bracket's other end: the bracket then closes there
        phi = u - f
        hi = jnp.where(up, jnp.clip(phi, lo, u), jnp.where(f == 0, u, hi))  # a gap of 0: u is the root
        lo = jnp.where(up, lo, jnp.clip(phi, u, hi))
        return lo, hi, a, f_a, b, f_b, jnp.where(up, 1, -1), jnp.append(widths[1:], width), steps + 1

    lo = jnp.clip(lo0 - f_lo, lo0, hi0)  # phi(lo0)
    hi = jnp.clip(hi0 - f_hi, lo, hi0)  # phi(hi0)
    state = (lo, hi, lo0, f_lo, hi0, f_hi, jnp.asarray(0), jnp.full(3, jnp.inf, cov.dtype), jnp.asarray(0))
    lo, hi, *_, steps = jax.lax.while_loop(cond, body, state)
    # a gap >= 0 at the lower end puts t* at or below it, a gap <= 0 at the upper end above it
    return jnp.where(f_lo >= 0, lo0, jnp.where(f_hi <= 0, hi0, 0.5 * (lo + hi))), steps


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3))
def _kappa_socp(kappa, root_steps, root_tol, iterations, prob, mean, cov):
    log_t = _socp_root(kappa, root_steps, root_tol, iterations, prob, mean, cov)
    return _socp_qp(kappa, iterations, prob, mean, cov, log_t)


def _kappa_socp_fwd(kappa, root_steps, root_tol, iterations, prob, mean, cov):
    log_t = jax.lax.stop_gradient(_socp_root(kappa, root_steps, root_tol, iterations, prob, mean, cov))
    return _socp_qp(kappa, iterations, prob, mean, cov, log_t), (prob, mean, cov, log_t)


def _kappa_socp_bwd(kappa, root_steps, root_tol, iterations, res, g):
    # w* = qp(theta, s*(theta)) with gap(theta, s*) = 0: d s* = -(d gap / d theta) / (d gap / d s)
    (w, gap), pull = jax.vjp(functools.partial(_socp_qp_and_gap, kappa, iterations), *res)
    *direct, s_bar = pull((g, jnp.zeros_like(gap)))
    *through_gap, gap_s = pull((jnp.zeros_like(w), jnp.ones_like(gap)))
    scale = -s_bar / gap_s

    def add(a, b):
        return a if a.dtype == jax.dtypes.float0 else a + scale * b

    return tuple(jax.tree_util.tree_map(add, a, b) for a, b in zip(direct, through_gap))


_kappa_socp.defvjp(_kappa_socp_fwd, _kappa_socp_bwd)


class GaussianReference(NamedTuple):
    """Exact eq. (9) reference of N test points (numpy float64 arrays)."""

    means: np.ndarray  # (N, d) E[c | x_i]
    covariance: np.ndarray  # (d, d) Cov[c | x] (the same for every x)
    decisions: np.ndarray  # (N, d) exact CVaR-optimal w*_i
    tail_prob: float


def gaussian_regret_reference(
    problem: DecisionProblem,
    model: Any,
    features: Float[ArrayLike, "N p"],
    tail_prob: float,
    *,
    root_steps: int = 80,
    root_tol: float = 1e-10,
    iterations: int = 60,
) -> GaussianReference:
    """Exact reference of eq. (9) for a Gaussian true model (``model.mean(x) -> (d,)`` and
    ``model.covariance: (d, d)``, e.g. :class:`~tailjax.dfl.problems.FactorReturnModel`):
    the means of the test ``features: (N, p)`` and their exact w*, solved in float64."""
    check_open_unit(tail_prob, "tail_prob", closed_right=True)
    if not hasattr(model, "covariance") or not hasattr(model, "mean"):
        raise ValueError("model must be Gaussian: it needs .mean(x) and .covariance")
    x = np.asarray(features, np.float64)
    if x.ndim != 2 or 0 in x.shape:
        raise ValueError(f"features must have shape (N, p) with N, p >= 1, got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("features must be finite")
    with jax.enable_x64(True):
        to64 = lambda a: jnp.asarray(np.asarray(a, np.float64))  # noqa: E731
        prob64 = jax.tree_util.tree_map(to64, problem)
        model64 = jax.tree_util.tree_map(to64, model)
        means = jax.jit(jax.vmap(model64.mean))(jnp.asarray(x))
        cov = jnp.asarray(model64.covariance)
        solve = jax.jit(jax.vmap(lambda m: gaussian_cvar_decision(
            prob64, m, cov, tail_prob, root_steps=root_steps, root_tol=root_tol, iterations=iterations)))
        w = solve(means)
        out = GaussianReference(np.asarray(means), np.asarray(cov), np.asarray(w), float(tail_prob))
    if not np.all(np.isfinite(out.decisions)):
        raise ValueError("the exact reference decision is not finite (the QP solver failed)")
    return out


def gaussian_regret(
    decisions: Float[ArrayLike, "N d"],
    reference: GaussianReference,
    problem: DecisionProblem,
    *,
    per_instance: bool = False,
    form: str = "cvar_of_difference",
) -> np.ndarray:
    """Eq. (9) in percent, exactly (numpy float64): see :func:`tailjax.dfl.cvar_regret`."""
    w = np.asarray(decisions, np.float64)
    ws = reference.decisions
    if w.shape != ws.shape:
        raise ValueError(f"decisions must have shape {ws.shape}, got {w.shape}")
    kappa = cvar_multiplier(reference.tail_prob)
    sign = float(np.asarray(problem.sign))
    P = np.asarray(problem.quadratic, np.float64)
    S = reference.covariance
    mu = reference.means
    quad = lambda v: np.einsum("nd,de,ne->n", v, P, v)  # noqa: E731
    sd = lambda v: np.sqrt(np.maximum(np.einsum("nd,de,ne->n", v, S, v), 0.0))  # noqa: E731
    mean_hat = sign * np.sum(mu * w, -1) + quad(w)
    mean_star = sign * np.sum(mu * ws, -1) + quad(ws)
    if form == "cvar_of_difference":
        tail = mean_hat - mean_star + kappa * sd(w - ws)
    elif form in ("difference_of_cvars", "abs_difference_of_cvars"):
        tail = mean_hat + kappa * sd(w) - mean_star - kappa * sd(ws)
        tail = np.abs(tail) if form == "abs_difference_of_cvars" else tail
    else:
        raise ValueError("form must be 'cvar_of_difference', 'difference_of_cvars' or "
                         f"'abs_difference_of_cvars', got {form!r}")
    ratio = 100.0 * tail / np.abs(mean_star)
    return ratio if per_instance else np.asarray(np.mean(ratio))

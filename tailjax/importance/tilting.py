"""Exponential tilting at dominating points for piecewise-linear losses.

For l(x, theta) = max_i (g_i^T x + c_i) with (g_i, c_i) depending on theta (the tutorial's
max_i theta^T A_i x has g_i = A_i^T theta, c_i = 0), the tail event {l >= u} is the union of
half-spaces {g_i^T x >= u - c_i}. Each has a dominating point

    a_i = argmin { Lambda*(x) : g_i^T x >= u - c_i },

Lambda the log-MGF of X and Lambda* its convex conjugate (the rate function), and a tilt
b_i with grad Lambda(b_i) = a_i. The IS law is the mixture sum_i p_i g_i with
g_i(x) = exp(b_i^T x - Lambda(b_i)) f_X(x), whose likelihood ratio is

    log L(x) = -logsumexp_i (log p_i + b_i^T x - Lambda(b_i)),

kept in log space. Mixture weights: ``"uniform"`` (p_i = 1/k) or ``"rate"``
(p_i proportional to exp(-Lambda*(a_i)), favouring the most likely half-space).

Gaussian X ~ N(m, S): closed form a_i = m + S g_i (v_i - g_i^T m) / (g_i^T S g_i) with
v_i = u - c_i when g_i^T m < v_i (else a_i = m, no tilt), b_i = S^-1 (a_i - m),
Lambda(b) = b^T m + b^T S b / 2. Generic X: a user log-MGF; :func:`tilt_parameter` solves
grad Lambda(b) = a by damped Newton, :func:`rate_function` is b^T a - Lambda(b) at that b,
and :func:`dominating_point` uses the KKT conditions (the tilt is b = lam g with lam >= 0
solving g^T grad Lambda(lam g) = v, a scalar safeguarded Newton). Sampling the tilted law
needs a user ``tilted_sampler(key, b, n)`` in the generic case.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import check_int, check_positive, is_concrete, nan_where, traced_below_zero

__all__ = [
    "TiltingParams",
    "gaussian_log_mgf",
    "gaussian_dominating_points",
    "tilt_parameter",
    "rate_function",
    "dominating_point",
    "dominating_points",
    "mixture_params",
    "mixture_log_lr",
    "sample_gaussian_mixture",
    "sample_tilted_mixture",
]

LogMGF = Callable[[Array], Array]


class TiltingParams(NamedTuple):
    """A mixture of exponentially tilted laws."""

    points: Array  # (k, d) dominating points a_i (= tilted means)
    tilts: Array  # (k, d) tilts b_i
    log_mgf: Array  # (k,) Lambda(b_i)
    log_weights: Array  # (k,) log p_i, normalised


def _float(x):
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


def _matrix(x, name):
    """(k, d) with k, d >= 1."""
    x = _float(x)
    if x.ndim != 2 or 0 in x.shape:
        raise ValueError(f"{name} must be a non-empty matrix (k, d), got shape {x.shape}")
    return x


def _vector(x, name, size=None):
    """(d,) with d >= 1 (d = ``size`` when given)."""
    x = _float(x)
    if x.ndim != 1 or x.shape[0] == 0 or (size is not None and x.shape[0] != size):
        want = "(d,)" if size is None else f"({size},)"
        raise ValueError(f"{name} must be a non-empty vector {want}, got shape {x.shape}")
    return x


def _check_max_iter(max_iter) -> int:
    return check_int(max_iter, "max_iter", minimum=1)


def gaussian_log_mgf(
    b: Float[ArrayLike, " d"], mean: Float[ArrayLike, " d"], cov: Float[ArrayLike, "d d"]
) -> Float[Array, ""]:
    """Lambda(b) = b^T m + b^T S b / 2 of N(m, S)."""
    b = _float(b)
    return jnp.dot(b, jnp.asarray(mean, b.dtype)) + 0.5 * b @ jnp.asarray(cov, b.dtype) @ b


def gaussian_dominating_points(
    directions: Float[ArrayLike, "k d"],
    levels: Float[ArrayLike, " k"],
    mean: Float[ArrayLike, " d"],
    cov: Float[ArrayLike, "d d"],
) -> tuple[Float[Array, "k d"], Float[Array, "k d"], Float[Array, " k"]]:
    """Closed-form dominating points of {g_i^T x >= v_i} under N(m, S).

    Returns ``(a, b, rate)``: points a_i, tilts b_i = S^-1 (a_i - m) and rates
    Lambda*(a_i) = (v_i - g_i^T m)_+^2 / (2 g_i^T S g_i).
    """
    g = _matrix(directions, "directions")
    v = _vector(levels, "levels", g.shape[0]).astype(g.dtype)
    m = jnp.asarray(mean, g.dtype)
    S = jnp.asarray(cov, g.dtype)
    Sg = g @ S  # (k, d), S symmetric
    var = jnp.sum(Sg * g, axis=-1)
    shortfall = jnp.maximum(v - g @ m, 0.0)
    step = shortfall / var
    a = m + Sg * step[:, None]
    b = g * step[:, None]
    return a, b, 0.5 * shortfall**2 / var


def tilt_parameter(
    log_mgf: LogMGF,
    a: Float[ArrayLike, " d"],
    b0: Float[ArrayLike, " d"] | None = None,
    *,
    max_iter: int = 100,
    tol: float | None = None,
) -> Float[Array, " d"]:
    """The tilt b with grad Lambda(b) = a: damped Newton on the convex Lambda(b) - b^T a.

    ``max_iter >= 1`` and ``tol >= 0``; a NaN in ``a`` or a traced ``tol`` out of range gives NaN.
    """
    a = _vector(a, "a")
    max_iter = _check_max_iter(max_iter)
    if tol is not None:
        check_positive(tol, "tol", allow_zero=True)
    bad = jnp.any(jnp.isnan(a))
    if tol is not None:
        bad = bad | traced_below_zero(tol)
    b = jnp.zeros_like(a) if b0 is None else jnp.asarray(b0, a.dtype)
    tol = (1e-12 if jnp.finfo(a.dtype).bits >= 64 else 1e-6) if tol is None else tol

    def objective(b):
        return log_mgf(b) - jnp.dot(b, a)

    grad = jax.grad(objective)
    hess = jax.hessian(objective)

    def cond(state):
        b, it, gnorm = state
        return (it < max_iter) & (gnorm > tol * (1.0 + jnp.max(jnp.abs(a))))

    def body(state):
        b, it, _ = state
        g = grad(b)
        step = -jnp.linalg.solve(hess(b), g)
        f0 = objective(b)

        def shrink(t):
            return (objective(b + t * step) > f0 + 1e-4 * t * jnp.dot(g, step)) & (t > 1e-10)

        t = jax.lax.while_loop(shrink, lambda t: 0.5 * t, jnp.ones((), a.dtype))
        b = b + t * step
        return b, it + 1, jnp.max(jnp.abs(grad(b)))

    g0 = jnp.max(jnp.abs(grad(b)))
    b, _, _ = jax.lax.while_loop(cond, body, (b, jnp.asarray(0, jnp.int32), g0))
    return jnp.where(bad, jnp.nan, b)


def rate_function(log_mgf: LogMGF, a: Float[ArrayLike, " d"], **kwargs) -> Float[Array, ""]:
    """Lambda*(a) = sup_b b^T a - Lambda(b), evaluated at the Newton tilt of :func:`tilt_parameter`.

    Its gradient (by the envelope theorem) is the tilt b(a)."""
    a = _float(a)
    b = jax.lax.stop_gradient(tilt_parameter(log_mgf, jax.lax.stop_gradient(a), **kwargs))
    return jnp.dot(b, a) - log_mgf(b)


def dominating_point(
    log_mgf: LogMGF,
    direction: Float[ArrayLike, " d"],
    level: Float[ArrayLike, ""],
    *,
    max_iter: int = 200,
) -> tuple[Float[Array, " d"], Float[Array, " d"]]:
    """argmin {Lambda*(x) : g^T x >= v} for a generic log-MGF; returns ``(a, b)``.

    KKT: b = grad Lambda*(a) = lam g with lam >= 0 and g^T a = v when the constraint binds,
    and a = grad Lambda(b). So lam solves phi(lam) = g^T grad Lambda(lam g) - v = 0, phi
    nondecreasing (Lambda convex): bracketed by doubling, then safeguarded Newton. If
    g^T E[X] >= v the constraint is slack: a = E[X], b = 0. A concrete ``level`` must be
    finite; a traced one that is not, or a NaN in ``direction``, gives NaN.
    """
    g = _vector(direction, "direction")
    max_iter = _check_max_iter(max_iter)
    if is_concrete(level) and not np.all(np.isfinite(np.asarray(level))):
        raise ValueError(f"level must be finite, got {level}")
    v = jnp.asarray(level, g.dtype)
    bad = jnp.any(jnp.isnan(g)) | ~jnp.isfinite(v)
    grad_mgf = jax.grad(log_mgf)

    def phi(lam):
        return jnp.dot(g, grad_mgf(lam * g)) - v

    dphi = jax.grad(phi)
    zero = jnp.zeros((), g.dtype)
    slack = phi(zero) >= 0

    def grow(state):
        hi, k = state
        return (phi(hi) < 0) & (k < 200)

    hi, _ = jax.lax.while_loop(grow, lambda s: (2.0 * s[0], s[1] + 1), (jnp.ones((), g.dtype), 0))
    eps = 8 * jnp.finfo(g.dtype).eps

    def body(state):
        lo, hi, lam, it = state
        val = phi(lam)
        lo = jnp.where(val < 0, lam, lo)
        hi = jnp.where(val < 0, hi, lam)
        newton = lam - val / dphi(lam)
        inside = (newton > lo) & (newton < hi) & jnp.isfinite(newton)
        return lo, hi, jnp.where(inside, newton, 0.5 * (lo + hi)), it + 1

    def cond(state):
        lo, hi, lam, it = state
        return (it < max_iter) & (hi - lo > eps * (1.0 + hi)) & (jnp.abs(phi(lam)) > eps * (1.0 + jnp.abs(v)))

    _, _, lam, _ = jax.lax.while_loop(cond, body, (zero, hi, 0.5 * hi, jnp.asarray(0, jnp.int32)))
    lam = jnp.where(slack, zero, lam)
    b = lam * g
    return nan_where(bad, (grad_mgf(b), b))


def dominating_points(
    log_mgf: LogMGF, directions: Float[ArrayLike, "k d"], levels: Float[ArrayLike, " k"]
) -> tuple[Float[Array, "k d"], Float[Array, "k d"]]:
    """:func:`dominating_point` for each half-space ``g_i^T x >= v_i`` (vmapped)."""
    g = _matrix(directions, "directions")
    v = _vector(levels, "levels", g.shape[0]).astype(g.dtype)
    return jax.vmap(lambda gi, vi: dominating_point(log_mgf, gi, vi))(g, v)


def mixture_params(
    log_mgf: LogMGF, points: Float[ArrayLike, "k d"], tilts: Float[ArrayLike, "k d"], weighting: str = "uniform"
) -> TiltingParams:
    """Mixture of the tilts: p_i uniform, or proportional to exp(-Lambda*(a_i)) (``"rate"``);
    all NaN if ``points`` or ``tilts`` has a NaN."""
    if weighting not in ("uniform", "rate"):
        raise ValueError(f"weighting must be 'uniform' or 'rate', got {weighting!r}")
    a = _matrix(points, "points")
    b = jnp.asarray(tilts, a.dtype)
    if b.shape != a.shape:
        raise ValueError(f"tilts of shape {b.shape} must match points of shape {a.shape}")
    lam = jax.vmap(log_mgf)(b)
    k = a.shape[0]
    if weighting == "uniform":
        logits = jnp.zeros(k, a.dtype)
    else:
        logits = -(jnp.sum(a * b, axis=-1) - lam)  # -Lambda*(a_i) = -(b_i^T a_i - Lambda(b_i))
    bad = jnp.any(jnp.isnan(a)) | jnp.any(jnp.isnan(b))
    return nan_where(bad, TiltingParams(a, b, lam, logits - logsumexp(logits)))


def mixture_log_lr(x: Float[ArrayLike, " d"], params: TiltingParams) -> Float[Array, ""]:
    """log f_X(x) / sum_i p_i g_i(x) = -logsumexp_i(log p_i + b_i^T x - Lambda(b_i))."""
    x = _vector(x, "x", params.tilts.shape[-1]).astype(params.tilts.dtype)
    return -logsumexp(params.log_weights + params.tilts @ x - params.log_mgf)


def sample_tilted_mixture(
    key: Array,
    params: TiltingParams,
    n: int,
    tilted_sampler: Callable[[Array, Array, int], Array],
) -> tuple[Float[Array, "n d"], Float[Array, " n"]]:
    """Draw ``n`` samples of the mixture and their log-likelihood ratios.

    ``tilted_sampler(key, b, n) -> (n, d)`` samples the law exp(b^T x - Lambda(b)) f_X(x).
    Every component is sampled ``n`` times and the component of each draw is chosen by a
    categorical draw (vectorised, no ragged shapes).
    """
    n = check_int(n, "n", minimum=1)
    k_comp, k_draw = jax.random.split(key)
    k = params.tilts.shape[0]
    comp = jax.random.categorical(k_comp, params.log_weights, shape=(n,))
    draws = jax.vmap(lambda kk, b: tilted_sampler(kk, b, n))(jax.random.split(k_draw, k), params.tilts)
    z = draws[comp, jnp.arange(n)]
    return z, jax.vmap(lambda zi: mixture_log_lr(zi, params))(z)


def sample_gaussian_mixture(
    key: Array,
    params: TiltingParams,
    n: int,
    chol: Float[ArrayLike, "d d"],
) -> tuple[Float[Array, "n d"], Float[Array, " n"]]:
    """Gaussian case: the tilt b_i of N(m, S) is N(a_i, S); ``chol`` is S's Cholesky factor."""
    n = check_int(n, "n", minimum=1)
    k_comp, k_draw = jax.random.split(key)
    a = params.points
    comp = jax.random.categorical(k_comp, params.log_weights, shape=(n,))
    eps = jax.random.normal(k_draw, (n, a.shape[1]), a.dtype)
    z = a[comp] + eps @ jnp.asarray(chol, a.dtype).T
    return z, jax.vmap(lambda zi: mixture_log_lr(zi, params))(z)

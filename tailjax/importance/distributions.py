"""Nominal laws f_X of the random vector X, as (sampler, per-sample log-density) pairs.

The importance samplers need two things of f_X: draws ``sample(key, n) -> (n, d)`` and the
log-density of one point ``log_prob(x: (d,)) -> scalar`` (``-inf`` off the support). Light
tails: :func:`gaussian`. Heavy tails: :func:`multivariate_t` (elliptical, with the radial
tail of a Student-t), :func:`iid_student_t`, :func:`iid_weibull` (shape < 1 is
subexponential) and :func:`iid_pareto` marginals. Any user pair with the same signature
works with :mod:`tailjax.importance.self_structuring`.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import check_int, check_positive, is_concrete

__all__ = [
    "Distribution",
    "gaussian",
    "multivariate_t",
    "iid_student_t",
    "iid_weibull",
    "iid_pareto",
]


class Distribution(NamedTuple):
    """A law on R^dim: ``sample(key, n) -> (n, dim)``, ``log_prob(x: (dim,)) -> scalar``."""

    sample: Callable[[Array, int], Array]
    log_prob: Callable[[Array], Array]
    dim: int


def _check_location(x, name):
    """A non-empty vector, finite when concrete."""
    if x.ndim != 1 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty 1-D vector, got shape {x.shape}")
    if is_concrete(x) and not np.all(np.isfinite(np.asarray(x))):
        raise ValueError(f"{name} must be finite (found NaN or inf)")


def _check_dim(dim) -> int:
    return check_int(dim, "dim", minimum=1)


def _chol(cov, d, dtype):
    if cov is None:
        return jnp.eye(d, dtype=dtype)
    cov = jnp.asarray(cov, dtype)
    if cov.shape != (d, d):
        raise ValueError(f"cov must have shape {(d, d)}, got {cov.shape}")
    return jnp.linalg.cholesky(cov)


def _whiten(L, identity):
    """x -> L^-1 x (a triangular solve; skipped for the identity, the common standardised case)."""
    if identity:
        return lambda v: v
    return lambda v: jax.scipy.linalg.solve_triangular(L, v, lower=True)


def gaussian(
    mean: Float[ArrayLike, " d"], cov: Float[ArrayLike, "d d"] | None = None
) -> Distribution:
    """N(mean, cov) (identity covariance by default); ``mean`` must be non-empty and finite."""
    mean = jnp.asarray(mean)
    _check_location(mean, "mean")
    d = mean.shape[0]
    dtype = mean.dtype if jnp.issubdtype(mean.dtype, jnp.floating) else jnp.result_type(float)
    mean = mean.astype(dtype)
    L = _chol(cov, d, dtype)
    logdet = jnp.sum(jnp.log(jnp.diag(L)))
    whiten = _whiten(L, cov is None)

    def sample(key, n):
        z = jax.random.normal(key, (n, d), dtype)
        return mean + (z if cov is None else z @ L.T)

    def log_prob(x):
        w = whiten(jnp.asarray(x, dtype) - mean)
        return -0.5 * jnp.dot(w, w) - logdet - 0.5 * d * jnp.log(2 * jnp.pi).astype(dtype)

    return Distribution(sample, log_prob, d)


def multivariate_t(
    nu: float,
    loc: Float[ArrayLike, " d"],
    scale: Float[ArrayLike, "d d"] | None = None,
) -> Distribution:
    """Multivariate Student-t: X = loc + L Z / sqrt(W / nu), Z ~ N(0, I), W ~ chi2(nu)."""
    check_positive(nu, "nu")
    loc = jnp.asarray(loc)
    _check_location(loc, "loc")
    d = loc.shape[0]
    dtype = loc.dtype if jnp.issubdtype(loc.dtype, jnp.floating) else jnp.result_type(float)
    loc = loc.astype(dtype)
    L = _chol(scale, d, dtype)
    logdet = jnp.sum(jnp.log(jnp.diag(L)))
    whiten = _whiten(L, scale is None)
    nu_ = jnp.asarray(nu, dtype)
    const = (
        gammaln((nu_ + d) / 2) - gammaln(nu_ / 2) - 0.5 * d * jnp.log(nu_ * jnp.pi) - logdet
    )

    integer_nu = float(nu).is_integer() and nu <= 64

    def sample(key, n):
        kz, kw = jax.random.split(key)
        z = jax.random.normal(kz, (n, d), dtype)
        if integer_nu:  # chi2(nu) as a sum of squares: much faster than a gamma draw
            w = jnp.sum(jax.random.normal(kw, (n, int(nu)), dtype) ** 2, axis=1, keepdims=True)
        else:
            w = 2.0 * jax.random.gamma(kw, nu_ / 2, (n, 1), dtype)
        y = z / jnp.sqrt(w / nu_)
        return loc + (y if scale is None else y @ L.T)

    def log_prob(x):
        w = whiten(jnp.asarray(x, dtype) - loc)
        return const - 0.5 * (nu_ + d) * jnp.log1p(jnp.dot(w, w) / nu_)

    return Distribution(sample, log_prob, d)


def iid_student_t(nu: float, dim: int, dtype=jnp.float32) -> Distribution:
    """``dim`` independent standard Student-t(nu) coordinates."""
    check_positive(nu, "nu")
    dim = _check_dim(dim)
    nu_ = jnp.asarray(nu, dtype)
    const = gammaln((nu_ + 1) / 2) - gammaln(nu_ / 2) - 0.5 * jnp.log(nu_ * jnp.pi)

    def sample(key, n):
        return jax.random.t(key, nu_, (n, dim), dtype)

    def log_prob(x):
        x = jnp.asarray(x, dtype)
        return jnp.sum(const - 0.5 * (nu_ + 1) * jnp.log1p(x**2 / nu_))

    return Distribution(sample, log_prob, dim)


def iid_weibull(shape: float, dim: int, scale: float = 1.0, dtype=jnp.float32) -> Distribution:
    """``dim`` independent Weibull(shape, scale) coordinates on (0, inf); heavy-ish
    (subexponential) tails for ``shape < 1``."""
    check_positive(shape, "shape")
    check_positive(scale, "scale")
    dim = _check_dim(dim)
    k, lam = jnp.asarray(shape, dtype), jnp.asarray(scale, dtype)

    def sample(key, n):
        e = jax.random.exponential(key, (n, dim), dtype)
        return lam * e ** (1.0 / k)

    def log_prob(x):
        x = jnp.asarray(x, dtype)
        pos = x > 0
        xs = jnp.where(pos, x, 1.0) / lam
        lp = jnp.log(k / lam) + (k - 1) * jnp.log(xs) - xs**k
        return jnp.sum(jnp.where(pos, lp, -jnp.inf))

    return Distribution(sample, log_prob, dim)


def iid_pareto(tail_index: float, dim: int, scale: float = 1.0, dtype=jnp.float32) -> Distribution:
    """``dim`` independent Pareto type II (Lomax) coordinates on [0, inf):
    P(X > x) = (1 + x / scale)^(-tail_index) (``tail_index`` is the Pareto shape alpha > 0).

    The support starts at 0 rather than at ``scale`` (type I): T_h maps each orthant onto
    itself and fixes 0, so it only covers supports that are unions of orthants; for a
    type-I Pareto, shift it to start at 0.
    """
    check_positive(tail_index, "tail_index")
    check_positive(scale, "scale")
    dim = _check_dim(dim)
    a, xm = jnp.asarray(tail_index, dtype), jnp.asarray(scale, dtype)

    def sample(key, n):
        uni = jax.random.uniform(key, (n, dim), dtype, minval=jnp.finfo(dtype).tiny, maxval=1.0)
        return xm * (uni ** (-1.0 / a) - 1.0)

    def log_prob(x):
        x = jnp.asarray(x, dtype)
        ok = x >= 0
        lp = jnp.log(a / xm) - (a + 1) * jnp.log1p(jnp.where(ok, x, 0.0) / xm)
        return jnp.sum(jnp.where(ok, lp, -jnp.inf))

    return Distribution(sample, log_prob, dim)

"""Exact velocity fields of Gaussian and Gaussian-mixture data, and the tilts of Gaussians.

For data N(m, C) the interpolant X_t = beta_t X_0 + alpha_t X_1 is N(alpha_t m, S_t) with
S_t = beta_t^2 I + alpha_t^2 C, and the velocity is

    v(x, t) = alpha_dot_t m + (alpha_t alpha_dot_t C + beta_t beta_dot_t I) S_t^{-1} (x - alpha_t m).

For a mixture sum_i w_i N(m_i, C_i) the velocity is the posterior-weighted average of the
component velocities, with weights proportional to w_i N(x; alpha_t m_i, S_{i,t}). These give
pre-trained models with no training error, so tests of fine-tuning isolate the fine-tuning.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp
from jaxtyping import Array, ArrayLike, Float

from tailjax.flows.schedule import Schedule, rectified_flow

__all__ = [
    "gaussian_velocity",
    "gaussian_mixture_velocity",
    "gaussian_mixture_log_prob",
    "tilt_gaussian_mixture",
]


def _component(x, t, mean, cov, schedule):
    """Velocity and log N(x; alpha_t m, S_t) of one Gaussian at one point x: (d,)."""
    d = x.shape[-1]
    eye = jnp.eye(d, dtype=x.dtype)
    a, b = schedule.alpha(t), schedule.beta(t)
    ad, bd = schedule.alpha_dot(t), schedule.beta_dot(t)
    s = b**2 * eye + a**2 * cov
    chol = jnp.linalg.cholesky(s)
    r = x - a * mean
    solved = jax.scipy.linalg.cho_solve((chol, True), r)
    v = ad * mean + (a * ad * cov + b * bd * eye) @ solved
    logdet = 2.0 * jnp.sum(jnp.log(jnp.diag(chol)))
    logp = -0.5 * (r @ solved + logdet + d * jnp.log(2.0 * jnp.pi))
    return v, logp


def _check_shapes(x, means, covs, weights=None):
    d = x.shape[-1]
    if means.ndim != 2 or means.shape[-1] != d:
        raise ValueError(f"means must have shape (k, {d}) to match x, got {means.shape}")
    if covs.shape != (means.shape[0], d, d):
        raise ValueError(f"covs must have shape ({means.shape[0]}, {d}, {d}), got {covs.shape}")
    if weights is not None and weights.shape != (means.shape[0],):
        raise ValueError(f"weights must have shape ({means.shape[0]},), got {weights.shape}")


def gaussian_velocity(
    x: Float[ArrayLike, " d"],
    t: Float[ArrayLike, ""],
    mean: Float[ArrayLike, " d"],
    cov: Float[ArrayLike, "d d"],
    schedule: Schedule | None = None,
) -> Float[Array, " d"]:
    """Exact velocity of data N(mean, cov) at one point ``x: (d,)`` (vmap for a batch)."""
    x = jnp.asarray(x)
    mean = jnp.asarray(mean, x.dtype)
    cov = jnp.asarray(cov, x.dtype)
    _check_shapes(x, mean[None], cov[None])
    schedule = schedule or rectified_flow()
    return _component(x, jnp.asarray(t, x.dtype), mean, cov, schedule)[0]


def gaussian_mixture_velocity(
    x: Float[ArrayLike, " d"],
    t: Float[ArrayLike, ""],
    weights: Float[ArrayLike, " k"],
    means: Float[ArrayLike, "k d"],
    covs: Float[ArrayLike, "k d d"],
    schedule: Schedule | None = None,
) -> Float[Array, " d"]:
    """Exact velocity of data sum_i weights_i N(means_i, covs_i) at one point ``x: (d,)``."""
    x = jnp.asarray(x)
    weights = jnp.asarray(weights, x.dtype)
    means, covs = jnp.asarray(means, x.dtype), jnp.asarray(covs, x.dtype)
    _check_shapes(x, means, covs, weights)
    schedule = schedule or rectified_flow()
    t = jnp.asarray(t, x.dtype)
    vs, logps = jax.vmap(lambda m, c: _component(x, t, m, c, schedule))(means, covs)
    logits = jnp.log(weights) + logps
    post = jax.nn.softmax(logits)
    return post @ vs


def gaussian_mixture_log_prob(
    x: Float[ArrayLike, " d"],
    weights: Float[ArrayLike, " k"],
    means: Float[ArrayLike, "k d"],
    covs: Float[ArrayLike, "k d d"],
) -> Float[Array, ""]:
    """log density of the mixture at one point ``x: (d,)``."""
    x = jnp.asarray(x)
    weights = jnp.asarray(weights, x.dtype)
    means, covs = jnp.asarray(means, x.dtype), jnp.asarray(covs, x.dtype)
    _check_shapes(x, means, covs, weights)
    ones = jnp.ones((), x.dtype)
    logps = jax.vmap(lambda m, c: _component(x, ones, m, c, rectified_flow())[1])(means, covs)
    return logsumexp(jnp.log(weights) + logps)


def tilt_gaussian_mixture(
    weights: Float[ArrayLike, " k"],
    means: Float[ArrayLike, "k d"],
    covs: Float[ArrayLike, "k d d"],
    c: Float[ArrayLike, " d"],
) -> tuple[Float[Array, " k"], Float[Array, "k d"], Float[Array, "k d d"]]:
    """The mixture tilted by exp(c^T x): means m_i + C_i c, weights w_i exp(c^T m_i + c^T C_i c / 2).

    With c = lambda * grad r for a linear reward r this is the fine-tuning target
    p*(x) proportional to p(x) exp(lambda r(x)).
    """
    weights, means, covs = jnp.asarray(weights), jnp.asarray(means), jnp.asarray(covs)
    c = jnp.asarray(c, means.dtype)
    _check_shapes(means[0], means, covs, weights)
    shift = covs @ c
    logw = jnp.log(weights) + means @ c + 0.5 * shift @ c
    return jax.nn.softmax(logw), means + shift, covs

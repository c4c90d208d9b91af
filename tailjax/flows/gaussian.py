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
import numpy as np
from jax.scipy.special import logsumexp
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import check_weights, is_concrete, nan_where, traced_bad_weights
from tailjax.flows.schedule import Schedule, check_time, nan_outside_time, rectified_flow

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


def _check_shapes(x, means, covs, weights=None, x_name="x", covs_name="covs"):
    if x.ndim != 1 or x.shape[0] == 0:
        raise ValueError(f"{x_name} must be one non-empty point (d,), got shape {x.shape}")
    d = x.shape[-1]
    if means.ndim != 2 or means.shape[-1] != d:
        raise ValueError(f"means must have shape (k, {d}) to match x, got {means.shape}")
    if covs.shape != (means.shape[0], d, d):
        raise ValueError(f"covs must have shape ({means.shape[0]}, {d}, {d}), got {covs.shape}")
    if is_concrete(covs):
        c = np.asarray(covs, dtype=float)
        if not np.all(np.isfinite(c)):
            raise ValueError(f"{covs_name} must be finite (found NaN or inf)")
        if np.any(np.linalg.eigvalsh(0.5 * (c + np.swapaxes(c, -1, -2))) < -1e-6 * (1.0 + np.abs(c).max())):
            raise ValueError(f"{covs_name} must be positive semi-definite")
    if weights is not None:
        if weights.shape != (means.shape[0],):
            raise ValueError(f"weights must have shape ({means.shape[0]},), got {weights.shape}")
        check_weights(weights, weights)


def _traced_bad_covs(covs):
    """Flag of traced covariances that are not positive semi-definite (``False`` if concrete)."""
    if is_concrete(covs):
        return False
    eig = jnp.linalg.eigvalsh(0.5 * (covs + jnp.swapaxes(covs, -1, -2)))
    return jnp.any(eig < -1e-6 * (1.0 + jnp.max(jnp.abs(covs)))) | ~jnp.all(jnp.isfinite(covs))


def gaussian_velocity(
    x: Float[ArrayLike, " d"],
    t: Float[ArrayLike, ""],
    mean: Float[ArrayLike, " d"],
    cov: Float[ArrayLike, "d d"],
    schedule: Schedule | None = None,
) -> Float[Array, " d"]:
    """Exact velocity of data N(mean, cov) at one point ``x: (d,)`` (vmap for a batch).

    ``t`` outside [0, 1] or a ``cov`` that is not positive semi-definite raise (NaN when traced)."""
    check_time(t)
    x = jnp.asarray(x)
    mean = jnp.asarray(mean, x.dtype)
    cov = jnp.asarray(cov, x.dtype)
    _check_shapes(x, mean[None], cov[None], covs_name="cov")
    schedule = schedule or rectified_flow()
    t = jnp.asarray(t, x.dtype)
    return nan_where(_traced_bad_covs(cov), nan_outside_time(t, _component(x, t, mean, cov, schedule)[0]))


def gaussian_mixture_velocity(
    x: Float[ArrayLike, " d"],
    t: Float[ArrayLike, ""],
    weights: Float[ArrayLike, " k"],
    means: Float[ArrayLike, "k d"],
    covs: Float[ArrayLike, "k d d"],
    schedule: Schedule | None = None,
) -> Float[Array, " d"]:
    """Exact velocity of data sum_i weights_i N(means_i, covs_i) at one point ``x: (d,)``.

    ``t`` outside [0, 1] or bad ``weights`` raise (NaN when traced)."""
    check_time(t)
    x = jnp.asarray(x)
    weights = jnp.asarray(weights, x.dtype)
    means, covs = jnp.asarray(means, x.dtype), jnp.asarray(covs, x.dtype)
    _check_shapes(x, means, covs, weights)
    schedule = schedule or rectified_flow()
    t = jnp.asarray(t, x.dtype)
    vs, logps = jax.vmap(lambda m, c: _component(x, t, m, c, schedule))(means, covs)
    logits = jnp.log(weights) + logps
    post = jax.nn.softmax(logits)
    bad = traced_bad_weights(weights) | _traced_bad_covs(covs)
    return nan_where(bad, nan_outside_time(t, post @ vs))


def gaussian_mixture_log_prob(
    x: Float[ArrayLike, " d"],
    weights: Float[ArrayLike, " k"],
    means: Float[ArrayLike, "k d"],
    covs: Float[ArrayLike, "k d d"],
) -> Float[Array, ""]:
    """log density of the mixture at one point ``x: (d,)``; bad ``weights`` raise (NaN when traced)."""
    x = jnp.asarray(x)
    weights = jnp.asarray(weights, x.dtype)
    means, covs = jnp.asarray(means, x.dtype), jnp.asarray(covs, x.dtype)
    _check_shapes(x, means, covs, weights)
    ones = jnp.ones((), x.dtype)
    logps = jax.vmap(lambda m, c: _component(x, ones, m, c, rectified_flow())[1])(means, covs)
    bad = traced_bad_weights(weights) | _traced_bad_covs(covs)
    return nan_where(bad, logsumexp(jnp.log(weights) + logps))


def tilt_gaussian_mixture(
    weights: Float[ArrayLike, " k"],
    means: Float[ArrayLike, "k d"],
    covs: Float[ArrayLike, "k d d"],
    c: Float[ArrayLike, " d"],
) -> tuple[Float[Array, " k"], Float[Array, "k d"], Float[Array, "k d d"]]:
    """The mixture tilted by exp(c^T x): means m_i + C_i c, weights w_i exp(c^T m_i + c^T C_i c / 2).

    With c = lambda * grad r for a linear reward r this is the fine-tuning target
    p*(x) proportional to p(x) exp(lambda r(x)). Bad ``weights`` raise, and so does a NaN in
    ``c``; traced, either gives NaN everywhere.
    """
    weights, means, covs = jnp.asarray(weights), jnp.asarray(means), jnp.asarray(covs)
    c = jnp.asarray(c, means.dtype)
    _check_shapes(c, means, covs, weights, x_name="c")
    if is_concrete(c) and not np.all(np.isfinite(np.asarray(c))):
        raise ValueError("c must be finite (found NaN or inf)")
    shift = covs @ c
    logw = jnp.log(weights) + means @ c + 0.5 * shift @ c
    bad = traced_bad_weights(weights) | (False if is_concrete(c) else ~jnp.all(jnp.isfinite(c)))
    return nan_where(bad, (jax.nn.softmax(logw), means + shift, covs))

"""The self-structuring importance-sampling transformation T_h (Deo & Murthy).

For x in R^d, tail mass beta (``tail_prob``) and the loss's growth rate rho (1 for
piecewise-linear losses, 2 for quadratic ones),

    s_h = h * max{log log(1/beta), 1},
    kappa_i(x) = log(1 + |x_i|) / (rho log(1 + ||x||_inf)),
    T_h(x) = x o s_h^kappa(x)          (T_h(x)_i = x_i s_h^kappa_i(x)).

The coordinate of largest modulus is multiplied by s_h^(1/rho), the others by less, so
T_h stretches typical samples X ~ f_X into the tail region while keeping their
"shape" (the concentration of the conditional excess is replicated). Samples Z = T_h(X)
have the likelihood ratio

    L_h = f_X(Z) / g_h(Z) = [f_X(Z) / f_X(X)] J_h(X),
    J_h(x) = det dT_h(x) = s_h^(1^T kappa(x)) prod_{i != k} J~_i(x),   k = argmax_i |x_i|,
    J~_i(x) = 1 + log(s_h) / (rho log(1 + ||x||_inf)) |x_i| / (1 + |x_i|),

all computed in log space. The determinant follows because the row of the maximal
coordinate k is s_h^(1/rho) e_k and every other row has entries on the diagonal and in
column k only. The tutorial's eq. (17) writes prod_i J~_i / max_i J~_i, which equals this
only for s_h >= 1 (J~ increases with |x_i| then); for s_h < 1 it is wrong.

Admissible scales: T_h is a bijection exactly when every J~_i > 0, i.e. s_h > e^(-rho)
(for s_h <= e^(-rho) the coordinate maps fold near the origin and the density of T_h(X)
is not f_X(x) / J_h(x)). Concrete arguments with s_h <= e^(-rho) raise ``ValueError``
naming h and tail_prob; traced ones give NaN. Works with any ``log_density`` (light or heavy tails). T_h keeps
signs and fixes 0, mapping every orthant onto itself, so the IS law covers the support of
f_X when that support is R^d or a union of orthants (Gaussian, Student-t, Weibull, Lomax
marginals); a support bounded away from 0 (a type-I Pareto on [1, inf)) must be shifted to
start at 0 first, else part of it is never sampled and the estimator is biased. T_h is inverted by
:func:`self_structuring_inverse` (Newton per coordinate) for every admissible s_h.

The transform, Jacobian and inverse act on ``x: (..., d)``, each row with its own
||x||_inf; the likelihood-ratio and density functions act on one point (vmap them, as
``self_structuring_sample`` does).
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
from jax.experimental import checkify
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import (
    check_int,
    check_open_unit,
    check_positive,
    is_concrete,
    nan_where,
    run_checked,
    traced_out_of_range,
)
from tailjax.importance.distributions import Distribution

__all__ = [
    "structuring_scale",
    "self_structuring_transform",
    "self_structuring_log_jacobian",
    "self_structuring_inverse",
    "self_structuring_log_lr",
    "self_structuring_log_density",
    "self_structuring_sample",
]

LogDensity = Callable[[Array], Array]


def _check(h, tail_prob, rho):
    check_positive(h, "h")
    check_open_unit(tail_prob, "tail_prob")
    check_positive(rho, "rho")
    if all(is_concrete(v) for v in (h, tail_prob, rho)):
        unit = max(math.log(math.log(1.0 / float(tail_prob))), 1.0)
        s = float(h) * unit
        if not s > math.exp(-float(rho)):
            raise ValueError(
                f"h={float(h)} at tail_prob={float(tail_prob)} gives s_h = {s:.4g} <= "
                f"e^(-rho) = {math.exp(-float(rho)):.4g}: T_h is not invertible there; "
                f"h must exceed {math.exp(-float(rho)) / unit:.4g}"
            )


def _float(x):
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


def structuring_scale(h: Float[ArrayLike, ""], tail_prob: float) -> Float[Array, ""]:
    """s_h = h * max{log log(1/beta), 1}."""
    check_positive(h, "h")
    check_open_unit(tail_prob, "tail_prob")
    h = _float(h)
    loglog = jnp.log(jnp.log(1.0 / jnp.asarray(tail_prob, h.dtype)))
    bad = traced_out_of_range(h, high=float("inf")) | traced_out_of_range(tail_prob)
    return nan_where(bad, h * jnp.maximum(loglog, 1.0))


def _log_scale(h, tail_prob, rho, dtype):
    """log s_h, NaN where s_h <= e^(-rho) (possible only for traced arguments)."""
    log_s = jnp.log(structuring_scale(jnp.asarray(h, dtype), tail_prob))
    log_s = nan_where(traced_out_of_range(rho, high=float("inf")), log_s)
    return jnp.where(log_s > -jnp.asarray(rho, dtype), log_s, jnp.nan)


def _kappa(x, rho):
    """kappa (..., d) with the normaliser log(1 + ||x||_inf) of each row."""
    ax = jnp.abs(x)
    big = jnp.log1p(jnp.max(ax, axis=-1, keepdims=True))
    safe = jnp.where(big > 0, big, 1.0)
    kappa = jnp.where(big > 0, jnp.log1p(ax) / (rho * safe), 0.0)
    return kappa, big, safe


def _vector(x, name):
    x = _float(x)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"{name} must have shape (..., d) with d >= 1, got {x.shape}")
    return x


def _point(x, name):
    x = _vector(x, name)
    if x.ndim != 1:
        raise ValueError(f"{name} must be one point (d,), got shape {x.shape}")
    return x


def self_structuring_transform(
    x: Float[ArrayLike, "... d"], h: Float[ArrayLike, ""], tail_prob: float, rho: float = 1.0
) -> Float[Array, "... d"]:
    """T_h(x) = x o s_h^kappa(x) for points ``x: (..., d)`` (each row its own ||x||_inf)."""
    _check(h, tail_prob, rho)
    x = _vector(x, "x")
    kappa, _, _ = _kappa(x, rho)
    return x * jnp.exp(kappa * _log_scale(h, tail_prob, rho, x.dtype))


def self_structuring_log_jacobian(
    x: Float[ArrayLike, "... d"], h: Float[ArrayLike, ""], tail_prob: float, rho: float = 1.0
) -> Float[Array, "..."]:
    """log J_h(x) = (1^T kappa) log s_h + sum_{i != k} log J~_i, k = argmax_i |x_i|, per row.

    Row k of dT_h is s_h^(1/rho) e_k and every other row i has entries only at (i, i) and
    (i, k), so the determinant is the product of the diagonal: s_h^(1/rho) for k and
    s_h^kappa_i J~_i for the others. (The tutorial's eq. (17) divides the product of all J~_i
    by max_i J~_i, the same thing when s_h >= 1 only.)
    """
    _check(h, tail_prob, rho)
    x = _vector(x, "x")
    log_s = _log_scale(h, tail_prob, rho, x.dtype)
    kappa, big, safe = _kappa(x, rho)
    ax = jnp.abs(x)
    log_jt = jnp.where(big > 0, jnp.log1p(log_s / (rho * safe) * ax / (1.0 + ax)), 0.0)
    k = jnp.argmax(ax, axis=-1)
    not_k = jnp.arange(x.shape[-1]) != k[..., None]
    # At x = 0 the map is the identity to first order along the axes: log J = 0 there.
    return jnp.sum(jnp.where(not_k, log_jt, 0.0), axis=-1) + jnp.sum(kappa, axis=-1) * log_s


def self_structuring_inverse(
    z: Float[ArrayLike, "... d"],
    h: Float[ArrayLike, ""],
    tail_prob: float,
    rho: float = 1.0,
    *,
    steps: int = 16,
) -> Float[Array, "... d"]:
    """T_h^{-1}(z) for points ``z: (..., d)``, for every admissible s_h > e^(-rho).

    The largest coordinate keeps its index, so ||x||_inf = ||z||_inf / s_h^(1/rho) fixes
    the normaliser L = log(1 + ||x||_inf); each t_i = log|x_i| then solves the scalar
    equation t + c log(1 + e^t) = log|z_i| with c = log(s_h) / (rho L), whose left side is
    increasing (its slope 1 + c sigmoid(t) is J~_i > 0). It is convex for s_h >= 1 and
    concave for s_h < 1; Newton from t = log|z_i| (above the root in the first case, below
    it in the second) converges monotonically and quadratically either way.
    """
    _check(h, tail_prob, rho)
    steps = check_int(steps, "steps", minimum=1)
    z = _vector(z, "z")
    log_s = _log_scale(h, tail_prob, rho, z.dtype)
    az = jnp.abs(z)
    xmax = jnp.max(az, axis=-1, keepdims=True) * jnp.exp(-log_s / rho)
    big = jnp.log1p(xmax)
    c = jnp.where(big > 0, log_s / (rho * jnp.where(big > 0, big, 1.0)), 0.0)
    nonzero = az > 0
    target = jnp.log(jnp.where(nonzero, az, 1.0))

    def newton(_, t):
        f = t + c * jax.nn.softplus(t) - target
        return t - f / (1.0 + c * jax.nn.sigmoid(t))

    t = jax.lax.fori_loop(0, steps, newton, target)
    x = jnp.where(nonzero, jnp.sign(z) * jnp.exp(t), 0.0)
    # the largest coordinate exactly (no Newton error)
    is_max = jnp.arange(z.shape[-1]) == jnp.argmax(az, axis=-1)[..., None]
    x = jnp.where(is_max & nonzero, jnp.sign(z) * xmax, x)
    return jnp.where(jnp.isnan(log_s), jnp.nan, x)


def self_structuring_log_lr(
    x: Float[ArrayLike, " d"],
    h: Float[ArrayLike, ""],
    tail_prob: float,
    log_density: LogDensity,
    rho: float = 1.0,
) -> tuple[Float[Array, " d"], Float[Array, ""]]:
    """(Z, log L_h) for one nominal draw ``x``: Z = T_h(x),
    log L_h = log f_X(Z) - log f_X(x) + log J_h(x) (both NaN if ``x`` has a NaN)."""
    x = _point(x, "x")
    z = self_structuring_transform(x, h, tail_prob, rho)
    log_lr = log_density(z) - log_density(x) + self_structuring_log_jacobian(x, h, tail_prob, rho)
    return nan_where(jnp.any(jnp.isnan(x)), (z, log_lr))


def self_structuring_log_density(
    z: Float[ArrayLike, " d"],
    h: Float[ArrayLike, ""],
    tail_prob: float,
    log_density: LogDensity,
    rho: float = 1.0,
) -> Float[Array, ""]:
    """log g_h(z) of Z = T_h(X), X ~ f_X: log f_X(T^{-1} z) - log J_h(T^{-1} z) (NaN if ``z``
    has a NaN)."""
    z = _point(z, "z")
    x = self_structuring_inverse(z, h, tail_prob, rho)
    out = log_density(x) - self_structuring_log_jacobian(x, h, tail_prob, rho)
    return jnp.where(jnp.any(jnp.isnan(z)), jnp.nan, out)


def self_structuring_sample(
    key: Array,
    dist: Distribution,
    n: int,
    h: Float[ArrayLike, ""],
    tail_prob: float,
    rho: float = 1.0,
    *,
    checked: bool = False,
) -> tuple[Float[Array, "n d"], Float[Array, " n"]]:
    """Draw ``n`` samples Z = T_h(X), X ~ ``dist``, with their log-likelihood ratios.

    Args:
      key: PRNG key.
      dist: nominal law (:class:`~tailjax.importance.distributions.Distribution`).
      n: number of samples (static).
      h: IS parameter (> 0), e.g. from
        :func:`tailjax.importance.oracle.self_structuring_oracle`.
      tail_prob: tail mass in (0, 1) of the loss (the tutorial's beta).
      rho: growth rate of the loss (> 0).
      checked: raise if ``dist.log_prob`` returns NaN (checkify).

    Returns:
      ``z: (n, d)`` and ``log_lr: (n,)``; the IS objective is then
      :func:`tailjax.importance.estimators.is_objective` on them.
    """
    _check(h, tail_prob, rho)
    n = check_int(n, "n", minimum=1)
    x = dist.sample(key, n)

    def compute(x, h):
        z, log_lr = jax.vmap(lambda xi: self_structuring_log_lr(xi, h, tail_prob, dist.log_prob, rho))(x)
        if checked:
            checkify.check(
                ~jnp.any(jnp.isnan(log_lr)),
                "log_density returned NaN at a nominal or transformed sample",
            )
        return z, log_lr

    if checked:
        return run_checked(compute, x, jnp.asarray(h))
    return compute(x, h)

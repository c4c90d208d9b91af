"""Sample-average and importance-sampling estimators of the tail-risk objective.

Notation of Deo & Murthy's tutorial: loss l(x, theta), tail mass beta (``tail_prob``, the
mass of the loss's upper tail), F(x; u, theta) = u + (l(x, theta) - u)_+ / beta, objective
f(u, theta) = E F(X; u, theta), whose minimum over u is CVaR_beta(l(X, theta)) (attained
at the VaR).

* SAA (tutorial eq. (7)): f_n(u, theta) = u + (n beta)^-1 sum_i (l(X_i, theta) - u)_+,
  X_i ~ f_X.
* IS (eq. (10)): f_is,n(u, theta) = u + (n beta)^-1 sum_i (l(Z_i, theta) - u)_+ L_i with
  Z_i from the IS law and L_i = f_X(Z_i) / g(Z_i). The likelihood ratios are passed as
  ``log_lr`` and combined with ``logsumexp``; they are never exponentiated one by one, so
  ratios of 1e-300 or 1e+300 neither underflow nor overflow.

Losses follow the convention ``loss(x, theta) -> scalar`` for one sample ``x: (d,)``; the
functions below ``vmap`` it over the samples. Every function is pure and can be vmapped
over decisions ``(u, theta)`` and over the IS parameter that produced ``log_lr``.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import (
    check_nonempty_last_axis,
    check_open_unit,
    is_concrete,
    nan_where,
    traced_out_of_range,
)
from tailjax.risk import ru_objective, var_cvar
from tailjax.risk.empirical import tail_count

__all__ = [
    "sample_losses",
    "saa_objective",
    "is_objective",
    "is_objective_from_losses",
    "is_tail_expectation",
    "is_tail_probability",
    "is_var_cvar",
    "log_second_moment",
]

# l(x, theta): the loss of decision theta at one sample x: (d,) (a problem's loss, not the
# training-loss shape of tailjax.base.Loss).
SampleLoss = Callable[[Array, Any], Array]


def _float(x):
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


def _check_lr(losses, log_lr):
    check_nonempty_last_axis(losses, "losses")
    if jnp.shape(log_lr) != jnp.shape(losses):
        raise ValueError(
            f"log_lr of shape {jnp.shape(log_lr)} must match losses of shape {jnp.shape(losses)}"
        )


def sample_losses(loss: SampleLoss, samples: Float[ArrayLike, "n d"], theta: Any) -> Float[Array, " n"]:
    """``l(X_i, theta)`` for every row of ``samples: (n, d)`` (non-empty)."""
    samples = jnp.asarray(samples)
    if samples.ndim == 0 or samples.size == 0:
        raise ValueError(f"samples must be a non-empty array (n, d), got shape {samples.shape}")
    return jax.vmap(loss, in_axes=(0, None))(samples, theta)


def saa_objective(
    u: Float[ArrayLike, ""],
    theta: Any,
    loss: SampleLoss,
    samples: Float[ArrayLike, "n d"],
    tail_prob: float,
) -> Float[Array, ""]:
    """SAA objective f_n(u, theta) on samples X_i ~ f_X (tutorial eq. (7)); NaN for a traced
    ``tail_prob`` outside (0, 1)."""
    check_open_unit(tail_prob, "tail_prob")
    value = ru_objective(u, sample_losses(loss, samples, theta), tail_prob)
    return nan_where(traced_out_of_range(tail_prob), value)


def is_objective_from_losses(
    u: Float[ArrayLike, "..."],
    losses: Float[ArrayLike, "... n"],
    log_lr: Float[ArrayLike, "... n"],
    tail_prob: float,
) -> Float[Array, "..."]:
    """u + (n beta)^-1 sum_i (l_i - u)_+ exp(log_lr_i), summed in log space.

    Differentiable in ``u``, ``losses`` and ``log_lr``; where no loss exceeds ``u`` the
    value is ``u`` and the gradient in ``u`` is 1 (not the NaN of a log of zero).
    """
    check_open_unit(tail_prob, "tail_prob")
    _check_lr(losses, log_lr)
    losses = _float(losses)
    log_lr = jnp.asarray(log_lr, losses.dtype)
    u = jnp.asarray(u, losses.dtype)
    n = losses.shape[-1]
    excess = jnp.maximum(losses - u[..., None], 0.0)
    hit = jnp.any(excess > 0, axis=-1, keepdims=True)
    # Without a hit the log-sum is log 0; a finite stand-in keeps its gradient finite.
    log_sum = logsumexp(jnp.where(hit, log_lr, 0.0), b=jnp.where(hit, excess, 1.0), axis=-1)
    log_norm = jnp.log(jnp.asarray(n * tail_prob, losses.dtype))
    value = u + jnp.where(hit[..., 0], jnp.exp(log_sum - log_norm), 0.0)
    return nan_where(traced_out_of_range(tail_prob), value)


def is_objective(
    u: Float[ArrayLike, ""],
    theta: Any,
    loss: SampleLoss,
    samples: Float[ArrayLike, "n d"],
    log_lr: Float[ArrayLike, " n"],
    tail_prob: float,
) -> Float[Array, ""]:
    """IS objective f_is,n(u, theta) on samples Z_i of the IS law (tutorial eq. (10))."""
    return is_objective_from_losses(u, sample_losses(loss, samples, theta), log_lr, tail_prob)


def is_tail_expectation(
    losses: Float[ArrayLike, "... n"],
    log_lr: Float[ArrayLike, "... n"],
    u: Float[ArrayLike, "..."],
) -> Float[Array, "..."]:
    """Unbiased IS estimate of E (l(X) - u)_+ : (1/n) sum_i (l_i - u)_+ L_i."""
    _check_lr(losses, log_lr)
    losses = _float(losses)
    u = jnp.asarray(u, losses.dtype)
    excess = jnp.maximum(losses - u[..., None], 0.0)
    n = losses.shape[-1]
    return jnp.exp(logsumexp(jnp.asarray(log_lr, losses.dtype), b=excess, axis=-1)) / n


def is_tail_probability(
    losses: Float[ArrayLike, "... n"],
    log_lr: Float[ArrayLike, "... n"],
    u: Float[ArrayLike, "..."],
) -> Float[Array, "..."]:
    """Unbiased IS estimate of P(l(X) > u) : (1/n) sum_i 1{l_i > u} L_i (NaN if a loss is NaN)."""
    _check_lr(losses, log_lr)
    losses = _float(losses)
    u = jnp.asarray(u, losses.dtype)
    hit = (losses > u[..., None]).astype(losses.dtype)
    n = losses.shape[-1]
    p = jnp.exp(logsumexp(jnp.asarray(log_lr, losses.dtype), b=hit, axis=-1)) / n
    return jnp.where(jnp.any(jnp.isnan(losses), axis=-1), jnp.nan, p)


def is_var_cvar(
    losses: Float[ArrayLike, "... n"],
    log_lr: Float[ArrayLike, "... n"] | None,
    tail_prob: float,
    *,
    max_tail_prob: float | None = None,
) -> tuple[Float[Array, "..."], Float[Array, "..."]]:
    """The minimiser u* (VaR) and minimum (CVaR) over u of the SAA/IS objective, exactly.

    With likelihood ratios L_i and W = sum_i L_i, min_u f_is,n(u) is the CVaR at tail mass
    alpha = n beta / W of the self-normalised measure sum_i (L_i / W) delta(l_i), so it is
    computed by one weighted sort, in log space: the masses L_i / (n beta) enter through
    ``log_lr`` capped at 2 (any one ratio of e^120 in float32 gives the right answer, not an
    underflowed alpha). ``log_lr=None`` is SAA (:func:`tailjax.risk.var_cvar`). When
    W < n beta (a degenerate IS sample) alpha is clipped to 1, giving the IS mean. NaN
    losses or log-ratios give NaN; ``log_lr = -inf`` is a zero weight.

    Args:
      losses: ``(..., n)`` losses l(Z_i, theta).
      log_lr: ``(..., n)`` log-likelihood ratios, or ``None`` for plain samples (SAA).
      tail_prob: tail mass in (0, 1) of the upper tail (the tutorial's beta); may be traced.
      max_tail_prob: SAA only (``log_lr=None``): a static bound on ``tail_prob`` (checked
        when ``tail_prob`` is concrete). Only the largest floor(n max_tail_prob) + 1 losses
        are selected (``lax.top_k``) instead of sorting all n: the same values (the count
        rule of :func:`tailjax.risk.var_cvar`), much faster for rare tails on a CPU.
    """
    check_open_unit(tail_prob, "tail_prob")
    losses = _float(losses)
    check_nonempty_last_axis(losses, "losses")
    return nan_where(
        traced_out_of_range(tail_prob), _is_var_cvar(losses, log_lr, tail_prob, max_tail_prob)
    )


def _is_var_cvar(losses, log_lr, tail_prob, max_tail_prob):
    if max_tail_prob is not None:
        check_open_unit(max_tail_prob, "max_tail_prob")
        if log_lr is not None:
            raise ValueError("max_tail_prob applies to plain samples only (log_lr=None)")
        if is_concrete(tail_prob) and float(tail_prob) > float(max_tail_prob):
            raise ValueError(f"tail_prob={tail_prob} exceeds max_tail_prob={max_tail_prob}")
        return _top_var_cvar(losses, tail_prob, float(max_tail_prob))
    if log_lr is None:
        return var_cvar(losses, tail_prob)
    _check_lr(losses, log_lr)
    log_lr = jnp.asarray(log_lr, losses.dtype)
    n = losses.shape[-1]
    return _log_weighted_var_cvar(losses, log_lr, jnp.log(jnp.asarray(n * tail_prob, losses.dtype)))


def _log_weighted_var_cvar(losses, log_lr, log_norm):
    """VaR and CVaR of the measure sum_i q_i delta(l_i) at tail mass 1,
    q_i = exp(log_lr_i - log_norm), without leaving log space: min_u u + sum_i q_i (l_i - u)_+.

    Sorted by decreasing loss, atom i gets the share clip(1 - (q_1 + ... + q_{i-1}), 0, q_i)
    of the unit tail. Masses are capped at 2 before the cumulative sum (an atom of mass >= 1
    already fills the tail, and a cap above 1 keeps "the mass before exceeds 1" exact), so
    ratios of e^120 in float32 neither overflow nor push the tail mass n beta / W below the
    smallest float. When sum_i q_i < 1 (W < n beta) the masses are normalised to sum to 1:
    the IS mean.
    """
    log_w = logsumexp(log_lr, axis=-1, keepdims=True)
    degenerate = log_w < log_norm
    log_q = log_lr - jnp.where(degenerate, log_w, log_norm)
    order = jnp.argsort(-losses, axis=-1)
    values = jnp.take_along_axis(losses, order, axis=-1)
    mass = jnp.exp(jnp.minimum(jnp.take_along_axis(log_q, order, axis=-1), jnp.log(2.0)))
    # the IS mean: masses summing to one exactly (no rounding left outside the tail)
    mass = jnp.where(degenerate, mass / jnp.sum(mass, axis=-1, keepdims=True), mass)
    before = jnp.cumsum(mass, axis=-1) - mass
    share = jnp.clip(1.0 - before, 0.0, mass)
    k = jnp.sum(before <= 1.0 + 4 * jnp.finfo(losses.dtype).eps, axis=-1) - 1
    inside = jnp.where((share > 0) | jnp.isfinite(values), values, 0.0)
    var_value = jnp.take_along_axis(values, jnp.maximum(k, 0)[..., None], axis=-1)[..., 0]
    bad = jnp.any(jnp.isnan(log_q) | jnp.isnan(losses), axis=-1)
    return (jnp.where(bad, jnp.nan, var_value),
            jnp.where(bad, jnp.nan, jnp.sum(share * inside, axis=-1)))


def _top_var_cvar(losses, tail_prob, max_tail_prob):
    """Upper VaR and CVaR of equally weighted losses from their top k values, with
    k = floor(n max_tail_prob) + 1 >= floor(n tail_prob) + 1 (the VaR's rank)."""
    n = losses.shape[-1]
    k = min(int(math.floor(tail_count(n, max_tail_prob))) + 1, n)
    count = jnp.asarray(tail_count(n, tail_prob, losses.dtype), losses.dtype)
    top = jax.lax.top_k(losses, k)[0]  # (..., k), descending
    share = jnp.clip(count - jnp.arange(k, dtype=losses.dtype), 0.0, 1.0)
    rank = jnp.minimum(jnp.floor(count).astype(jnp.int32), k - 1)
    var_value = jnp.take(top, rank, axis=-1)
    return var_value, jnp.sum(share * top, axis=-1) / count


def log_second_moment(
    losses: Float[ArrayLike, "... n"],
    log_lr: Float[ArrayLike, "... n"],
    u: Float[ArrayLike, "..."],
) -> Float[Array, "..."]:
    """log of M2 = (1/n) sum_i [(l_i - u)_+ L_i]^2, the empirical second moment of the IS
    estimator of E (l - u)_+ (``-inf`` when no sample exceeds ``u``)."""
    _check_lr(losses, log_lr)
    losses = _float(losses)
    u = jnp.asarray(u, losses.dtype)
    excess = jnp.maximum(losses - u[..., None], 0.0)
    n = losses.shape[-1]
    log_m2 = logsumexp(2.0 * jnp.asarray(log_lr, losses.dtype), b=excess**2, axis=-1)
    return log_m2 - jnp.log(jnp.asarray(n, losses.dtype))

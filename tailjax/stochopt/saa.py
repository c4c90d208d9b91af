"""Sample-average approximation of CVaR and mean-CVaR minimisation (tutorial eqs. (8), (9)),
with plain or importance-sampled samples, solved in JAX to a certified gap.

For samples Z_i with log-likelihood ratios log L_i (zeros for plain SAA) the objective is

    f_n(theta) = min_u  (1 - lam) [u + (n beta)^-1 sum_i L_i (l(Z_i, theta) - u)_+]
                       + lam (1/n) sum_i L_i l(Z_i, theta)

(``risk_weight`` lam = 0: CVaR, eq. (8); lam in (0, 1]: mean-CVaR, eq. (9), matching
:func:`tailjax.risk.mean_cvar`). The inner minimum over u is computed exactly by one
weighted sort (:func:`tailjax.importance.estimators.is_var_cvar`), and its gradient in theta
is the exact dual subgradient sum_i q_i grad l(Z_i, theta) with the tail weights q. For
losses convex in theta, f_n is convex and :func:`solve_saa` minimises it over Theta with the
level method (:mod:`tailjax.stochopt.level`), stopping at a certified gap.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import check_open_unit, is_concrete, nan_where, traced_out_of_range
from tailjax.importance.estimators import SampleLoss, is_var_cvar, sample_losses
from tailjax.stochopt.level import level_method

__all__ = ["SAAResult", "saa_value", "solve_saa"]


class SAAResult(NamedTuple):
    theta: Array  # (d,) decision
    u: Array  # VaR at theta (the minimising threshold)
    value: Array  # f_n(theta), an upper bound on the SAA optimum
    lower: Array  # certified lower bound on the SAA optimum
    gap: Array
    iterations: Array
    converged: Array


def _check_risk_weight(risk_weight):
    if is_concrete(risk_weight) and not 0.0 <= float(risk_weight) <= 1.0:
        raise ValueError(f"risk_weight must lie in [0, 1], got {risk_weight}")


def _traced_bad_risk_weight(risk_weight):
    return traced_out_of_range(risk_weight, low_closed=True, high_closed=True)


def saa_value(
    theta: Float[ArrayLike, " d"],
    loss: SampleLoss,
    samples: Float[ArrayLike, "n k"],
    tail_prob: float,
    *,
    log_lr: Float[ArrayLike, " n"] | None = None,
    risk_weight: float = 0.0,
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """f_n(theta) and the minimising threshold u (VaR); differentiable in ``theta``.

    Args:
      theta: decision ``(d,)``.
      loss: ``loss(x, theta) -> scalar`` for one sample.
      samples: ``(n, k)`` samples (from f_X, or from an IS law with ``log_lr``).
      tail_prob: tail mass in (0, 1) of the loss's upper tail (the tutorial's beta).
      log_lr: optional ``(n,)`` log-likelihood ratios log f_X(Z_i)/g(Z_i).
      risk_weight: lam in [0, 1]; 0 is CVaR (may be traced, e.g. to vmap over lam; a traced
        one outside [0, 1] gives NaN).
    """
    check_open_unit(tail_prob, "tail_prob")
    _check_risk_weight(risk_weight)
    losses = sample_losses(loss, samples, theta)
    u, tail = is_var_cvar(losses, log_lr, tail_prob)
    u = jax.lax.stop_gradient(u)
    if isinstance(risk_weight, (int, float)) and risk_weight == 0.0:
        return tail, u
    n = losses.shape[-1]
    if log_lr is None:
        mean = jnp.mean(losses)
    else:
        log_lr = jnp.asarray(log_lr, losses.dtype)
        probs = jnp.exp(log_lr - logsumexp(log_lr))
        mean = jnp.sum(probs * losses) * jnp.exp(logsumexp(log_lr) - jnp.log(jnp.asarray(n, losses.dtype)))
    lam = jnp.asarray(risk_weight, losses.dtype)
    return nan_where(_traced_bad_risk_weight(risk_weight), (lam * mean + (1.0 - lam) * tail, u))


def solve_saa(
    loss: SampleLoss,
    samples: Float[ArrayLike, "n k"],
    theta_set: Any,
    tail_prob: float,
    *,
    log_lr: Float[ArrayLike, " n"] | None = None,
    risk_weight: float = 0.0,
    theta0: Float[ArrayLike, " d"] | None = None,
    tol: float = 1e-6,
    atol: float | Array = 0.0,
    max_iter: int = 200,
) -> SAAResult:
    """Minimise the SAA/IS (mean-)CVaR objective over ``theta_set`` to a certified gap.

    The loss must be convex in ``theta`` (e.g. the portfolio loss -theta^T x, or a
    two-stage recourse cost). The solver stops when ``value - lower <= atol + tol * |value|``
    (``converged``) or after ``max_iter`` cuts; ``lower`` is a valid lower bound in any case.

    Args:
      loss, samples, tail_prob, log_lr, risk_weight: as in :func:`saa_value`.
      theta_set: decision set from :mod:`tailjax.stochopt.sets`.
      theta0: warm start (default: the set's ``feasible_point``).
      tol, atol: relative and absolute gap tolerances.
      max_iter: cut budget of the level method.

    NaN samples or log-ratios, or a traced ``tail_prob``/``risk_weight`` out of range, give
    NaN for theta, u and the bounds.
    """
    check_open_unit(tail_prob, "tail_prob")
    _check_risk_weight(risk_weight)
    samples = jnp.asarray(samples)
    dt = samples.dtype if jnp.issubdtype(samples.dtype, jnp.floating) else jnp.result_type(float)
    if theta0 is None:
        theta0 = theta_set.feasible_point(dt)

    def fun(theta):
        return saa_value(theta, loss, samples, tail_prob, log_lr=log_lr, risk_weight=risk_weight)

    res = level_method(fun, theta_set, jnp.asarray(theta0, dt), tol=tol, atol=atol, max_iter=max_iter)
    invalid = (traced_out_of_range(tail_prob) | _traced_bad_risk_weight(risk_weight)
               | jnp.any(jnp.isnan(samples))
               | (False if log_lr is None else jnp.any(jnp.isnan(jnp.asarray(log_lr)))))
    theta, u, value, lower, gap = nan_where(invalid, (res.theta, res.aux, res.value, res.lower, res.gap))
    return SAAResult(theta, u, value, lower, gap, res.iterations, res.converged)

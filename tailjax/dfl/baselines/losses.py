"""Batch losses of the Pred-DFL baselines, on the loss convention
``loss(params, batch, key, *, apply_fn, problem, oracle, ...) -> (value, None)``.

``functools.partial(spo_plus_loss, apply_fn=..., problem=..., oracle=...)`` is a loss for
:func:`tailjax.training.gradient_kernel` or :func:`~tailjax.dfl.baselines.baseline_kernel`.
Every loss takes the same three keywords (a loss that needs no ``problem`` or ``oracle``
ignores them), so one call site trains any of them.

``batch`` is a :class:`DFLBatch`: features ``(B, p)``, realised costs ``(B, d)``, their
hindsight-optimal solutions w*(c) ``(B, d)`` (cached once per data set), and the solution
cache ``(S, d)`` of the contrastive and ranking losses (the baseline kernel fills it in).
``apply_fn(params, features (B, p)) -> c_hat (B, d)`` is the point predictor.

=========================  =====================================================================
:func:`mse_loss`           two-stage PTO: mean squared error.
:func:`log_mse_loss`       two-stage PTO on log costs (positive costs and predictions).
:func:`spo_plus_loss`      SPO+ with the exact ``oracle``.
:func:`nce_loss`           noise-contrastive estimation against ``pool_size`` cached solutions.
:func:`contrastive_map_loss`  contrastive MAP (the best cached solution under the prediction).
:func:`pairwise_ltr_loss`  pairwise learning to rank of the pool (+ w*), hinge ``margin``.
:func:`listwise_ltr_loss`  listwise learning to rank, softmax ``temperature``.
:func:`qptl_loss`          QPTL: regret of the point decision with ``reg = problem.reg``.
:func:`dfl_plus_loss`      Pred-DFL+: regret of the CVaR decision at ``tail_prob`` over
                           ``num_samples`` Gaussian samples c_hat + sigma eps.
=========================  =====================================================================
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from tailjax._checks import (
    check_int, check_open_unit, check_positive, nan_where, traced_below_zero, traced_out_of_range,
)
from tailjax.dfl.baselines import surrogates as S
from tailjax.dfl.problems.base import DecisionProblem, decision, point_decision_of

__all__ = [
    "DFLBatch",
    "mse_loss",
    "log_mse_loss",
    "spo_plus_loss",
    "nce_loss",
    "contrastive_map_loss",
    "pairwise_ltr_loss",
    "listwise_ltr_loss",
    "qptl_loss",
    "dfl_plus_loss",
]

ApplyFn = Callable[[Any, Array], Array]
Oracle = Callable[[Array], Array]
Loss = tuple[Float[Array, ""], None]


class DFLBatch(NamedTuple):
    features: Array  # (B, p)
    costs: Array  # (B, d)
    solutions: Array  # (B, d) hindsight-optimal w*(c)
    cache: Array | None = None  # (S, d) cached feasible solutions


def _mean_over_batch(per_instance, params, batch: DFLBatch, key, apply_fn) -> Loss:
    """mean_i per_instance(c_hat_i, c_i, w*_i, key_i), key_i = split(key, B)[i]; NaN if a
    cost is NaN."""
    c_hat = apply_fn(params, batch.features)
    if jnp.shape(batch.costs) != c_hat.shape:
        raise ValueError(f"costs must have shape {c_hat.shape} (the predictions'), got {jnp.shape(batch.costs)}")
    c = batch.costs.astype(c_hat.dtype)
    w_star = batch.solutions.astype(c_hat.dtype)
    keys = jax.random.split(key, c.shape[0])
    value = jnp.mean(jax.vmap(per_instance)(c_hat, c, w_star, keys))
    return jnp.where(jnp.any(jnp.isnan(c)), jnp.nan, value), None


def _pool_loss(pool_fn, params, batch: DFLBatch, key, apply_fn, pool_size: int, name: str) -> Loss:
    """Mean of ``pool_fn(c_hat, c, w*, pool)`` with pool = [w*, pool_size cached solutions]."""
    if batch.cache is None:
        raise ValueError(f"{name} needs batch.cache (a solution cache)")
    pool_size = check_int(pool_size, "pool_size", minimum=1)

    def one(c_hat, c, w_star, k):
        idx = jax.random.randint(k, (pool_size,), 0, batch.cache.shape[0])
        pool = jnp.concatenate([w_star[None, :], batch.cache[idx].astype(w_star.dtype)], axis=0)
        return pool_fn(c_hat, c, w_star, pool)

    return _mean_over_batch(one, params, batch, key, apply_fn)


def mse_loss(params: Any, batch: DFLBatch, key: Array, *, apply_fn: ApplyFn,
             problem: DecisionProblem | None = None, oracle: Oracle | None = None) -> Loss:
    """Two-stage PTO: mean ||c_hat - c||^2 / d (``problem`` and ``oracle`` unused)."""
    return _mean_over_batch(lambda ch, c, w, k: S.mse(ch, c), params, batch, key, apply_fn)


def log_mse_loss(params: Any, batch: DFLBatch, key: Array, *, apply_fn: ApplyFn,
                 problem: DecisionProblem | None = None, oracle: Oracle | None = None) -> Loss:
    """Two-stage PTO on log costs: mean ||log c_hat - log c||^2 / d, for positive costs and a
    positive prediction (e.g. :class:`tailjax.nn.LogLinkPredictor`, whose exp(g(x)) is then
    decided on as the cost). A batch with a cost <= 0 gives NaN."""
    value, _ = _mean_over_batch(lambda ch, c, w, k: S.mse(jnp.log(ch), jnp.log(c)), params, batch, key, apply_fn)
    return jnp.where(jnp.any(jnp.asarray(batch.costs) <= 0), jnp.nan, value), None


def spo_plus_loss(params: Any, batch: DFLBatch, key: Array, *, apply_fn: ApplyFn,
                  problem: DecisionProblem, oracle: Oracle) -> Loss:
    """SPO+ (Elmachtoub & Grigas) with the exact ``oracle(c (d,)) -> w (d,)``."""
    return _mean_over_batch(lambda ch, c, w, k: S.spo_plus(ch, c, w, problem, oracle),
                            params, batch, key, apply_fn)


def nce_loss(params: Any, batch: DFLBatch, key: Array, *, apply_fn: ApplyFn,
             problem: DecisionProblem, oracle: Oracle | None = None, pool_size: int = 32) -> Loss:
    """Noise-contrastive estimation against ``pool_size`` solutions drawn from the cache."""
    return _pool_loss(lambda ch, c, w, pool: S.nce(ch, w, pool, problem),
                      params, batch, key, apply_fn, pool_size, "nce_loss")


def contrastive_map_loss(params: Any, batch: DFLBatch, key: Array, *, apply_fn: ApplyFn,
                         problem: DecisionProblem, oracle: Oracle | None = None,
                         pool_size: int = 32) -> Loss:
    """Contrastive MAP: w* against the best of ``pool_size`` cached solutions under c_hat."""
    return _pool_loss(lambda ch, c, w, pool: S.contrastive_map(ch, w, pool, problem),
                      params, batch, key, apply_fn, pool_size, "contrastive_map_loss")


def pairwise_ltr_loss(params: Any, batch: DFLBatch, key: Array, *, apply_fn: ApplyFn,
                      problem: DecisionProblem, oracle: Oracle | None = None,
                      pool_size: int = 32, margin: float = 0.1) -> Loss:
    """Pairwise learning to rank of the pool (+ w*) with hinge ``margin`` >= 0 (a traced
    one out of range gives NaN)."""
    check_positive(margin, "margin", allow_zero=True)
    value, aux = _pool_loss(lambda ch, c, w, pool: S.pairwise_ltr(ch, c, pool, problem, margin),
                            params, batch, key, apply_fn, pool_size, "pairwise_ltr_loss")
    return nan_where(traced_below_zero(margin), value), aux


def listwise_ltr_loss(params: Any, batch: DFLBatch, key: Array, *, apply_fn: ApplyFn,
                      problem: DecisionProblem, oracle: Oracle | None = None,
                      pool_size: int = 32, temperature: float = 1.0) -> Loss:
    """Listwise learning to rank of the pool (+ w*), softmax ``temperature`` > 0 (a traced
    one out of range gives NaN)."""
    check_positive(temperature, "temperature")
    value, aux = _pool_loss(lambda ch, c, w, pool: S.listwise_ltr(ch, c, pool, problem, temperature),
                            params, batch, key, apply_fn, pool_size, "listwise_ltr_loss")
    return nan_where(traced_below_zero(temperature, allow_zero=False), value), aux


def qptl_loss(params: Any, batch: DFLBatch, key: Array, *, apply_fn: ApplyFn,
              problem: DecisionProblem, oracle: Oracle | None = None) -> Loss:
    """QPTL: regret f(c, w(c_hat)) - f(c, w*) of the point decision regularised by
    ``problem.reg`` ||w||^2 (differentiable; ``problem.reg > 0`` for LPs)."""
    return _mean_over_batch(
        lambda ch, c, w, k: S.decision_regret(point_decision_of(problem, ch), c, w, problem),
        params, batch, key, apply_fn,
    )


def dfl_plus_loss(params: Any, batch: DFLBatch, key: Array, *, apply_fn: ApplyFn,
                  problem: DecisionProblem, oracle: Oracle | None = None, sigma: float | Array,
                  tail_prob: float = 1.0, num_samples: int = 16) -> Loss:
    """Pred-DFL+: regret of the CVaR decision at ``tail_prob`` (the paper's alpha) over
    ``num_samples`` isotropic Gaussian samples c_hat + sigma eps (``sigma`` >= 0, may be
    traced: out of range, or a traced ``tail_prob`` out of (0, 1], it gives NaN;
    :func:`~tailjax.dfl.baselines.dfl_plus_sigma` gives the usual choice)."""
    check_open_unit(tail_prob, "tail_prob", closed_right=True)
    check_positive(sigma, "sigma", allow_zero=True)
    num_samples = check_int(num_samples, "num_samples", minimum=1)

    def one(c_hat, c, w_star, k):
        eps = jax.random.normal(k, (num_samples, c_hat.shape[0]), c_hat.dtype)
        w = decision(problem, c_hat + jnp.asarray(sigma, c_hat.dtype) * eps, tail_prob)
        return S.decision_regret(w, c, w_star, problem)

    value, aux = _mean_over_batch(one, params, batch, key, apply_fn)
    invalid = traced_below_zero(sigma) | traced_out_of_range(tail_prob, high_closed=True)
    return nan_where(invalid, value), aux

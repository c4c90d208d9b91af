"""Batch losses ``loss(params, batch, key) -> scalar`` of the Pred-DFL baselines.

``batch`` is a :class:`DFLBatch`: features ``(B, p)``, realised costs ``(B, d)``, their
hindsight-optimal solutions w*(c) ``(B, d)`` (cached once per data set), and the solution
cache ``(S, d)`` for the contrastive and ranking losses (the training kernel fills it in).

Methods (``METHODS``):

=========  ==============================================================================
``mse``    two-stage PTO: mean squared error.
``spo+``   SPO+ with the exact oracle.
``nce``    noise-contrastive estimation against ``pool_size`` cached solutions.
``map``    contrastive MAP (the best cached solution under the prediction).
``pairwise`` / ``listwise``  learning to rank the pool (+ w*).
``dfl``    QPTL: regret of the point decision with ``reg = problem.reg`` (mu ||w||^2).
``dfl+``   Pred-DFL+: regret of the CVaR decision over ``num_samples`` Gaussian samples
           c_hat + sigma eps (isotropic, ``sigma`` fixed) at ``tail_prob`` (= alpha).
=========  ==============================================================================
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array

from tailjax._checks import check_open_unit, check_positive
from tailjax.dfl.baselines import surrogates as S
from tailjax.dfl.problems.base import DecisionProblem, decision, point_decision_of

__all__ = ["DFLBatch", "METHODS", "make_loss"]

METHODS = ("mse", "spo+", "nce", "map", "pairwise", "listwise", "dfl", "dfl+")
POOL_METHODS = ("nce", "map", "pairwise", "listwise")


class DFLBatch(NamedTuple):
    features: Array  # (B, p)
    costs: Array  # (B, d)
    solutions: Array  # (B, d) hindsight-optimal w*(c)
    cache: Array | None = None  # (S, d) cached feasible solutions


def _pool(key, cache, w_star, pool_size):
    idx = jax.random.randint(key, (pool_size,), 0, cache.shape[0])
    return jnp.concatenate([w_star[None, :], cache[idx]], axis=0)


def make_loss(
    method: str,
    apply_fn: Callable[[object, Array], Array],
    problem: DecisionProblem,
    oracle: Callable[[Array], Array],
    *,
    pool_size: int = 32,
    margin: float = 0.1,
    temperature: float = 1.0,
    tail_prob: float = 1.0,
    num_samples: int = 16,
    sigma: float = 0.1,
) -> Callable[[object, DFLBatch, Array], Array]:
    """Build ``loss(params, batch, key)`` for ``method`` (see the module docstring).

    Args:
      apply_fn: ``apply_fn(params, features (B, p)) -> c_hat (B, d)``.
      problem: the decision problem (``problem.reg`` is QPTL's mu for ``dfl``/``dfl+``).
      oracle: exact ``oracle(c (d,)) -> argmin_w f(c, w)``.
      pool_size: cached solutions drawn per instance for the pool methods.
      margin, temperature: pairwise hinge margin, listwise softmax temperature.
      tail_prob, num_samples, sigma: Pred-DFL+'s CVaR level (alpha), K and noise scale.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if int(pool_size) < 1:
        raise ValueError(f"pool_size must be >= 1, got {pool_size}")
    if int(num_samples) < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    check_open_unit(tail_prob, "tail_prob", closed_right=True)
    check_positive(temperature, "temperature")
    check_positive(sigma, "sigma", allow_zero=True)

    def per_instance(c_hat, c, w_star, cache, key):
        if method == "mse":
            return S.mse(c_hat, c)
        if method == "spo+":
            return S.spo_plus(c_hat, c, w_star, problem, oracle)
        if method == "dfl":
            return S.regret_loss(point_decision_of(problem, c_hat), c, w_star, problem)
        if method == "dfl+":
            eps = jax.random.normal(key, (int(num_samples), c_hat.shape[0]), c_hat.dtype)
            w = decision(problem, c_hat + sigma * eps, tail_prob)
            return S.regret_loss(w, c, w_star, problem)
        pool = _pool(key, cache, w_star, int(pool_size))
        if method == "nce":
            return S.nce(c_hat, w_star, pool, problem)
        if method == "map":
            return S.contrastive_map(c_hat, w_star, pool, problem)
        if method == "pairwise":
            return S.pairwise_ltr(c_hat, c, pool, problem, margin)
        return S.listwise_ltr(c_hat, c, pool, problem, temperature)

    def loss(params, batch: DFLBatch, key: Array) -> Array:
        if method in POOL_METHODS and batch.cache is None:
            raise ValueError(f"method {method!r} needs batch.cache (a solution cache)")
        c_hat = apply_fn(params, batch.features)
        c = batch.costs.astype(c_hat.dtype)
        w_star = batch.solutions.astype(c_hat.dtype)
        keys = jax.random.split(key, c.shape[0])
        cache = batch.cache if batch.cache is not None else w_star
        values = jax.vmap(per_instance, in_axes=(0, 0, 0, None, 0))(c_hat, c, w_star, cache, keys)
        return jnp.mean(values)

    return loss

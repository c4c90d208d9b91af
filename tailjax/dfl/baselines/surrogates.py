"""Per-instance losses of the Pred-DFL baselines (one prediction ``c_hat: (d,)``; vmap for a
batch). Objectives are the problem's realised cost f(c, w) = sign c^T w + w^T P w
(:func:`tailjax.dfl.problems.objective`), so maximisation problems need no special case.

- :func:`mse`: two-stage predict-then-optimize, ||c_hat - c||^2 / d.
- :func:`spo_plus`: SPO+ (Elmachtoub & Grigas), f(2 c_hat - c, w*(c)) - min_w f(2 c_hat - c, w)
  >= 0, computed with the exact oracle; for linear f it is the textbook SPO+, with the
  portfolio's w^T Sigma w it keeps the quadratic term inside the oracle.
- :func:`nce`, :func:`contrastive_map`: noise-contrastive estimation and its MAP variant
  (Mulamba et al. 2021) against a pool of cached feasible solutions S:
  mean_s / max_s [f(c_hat, w*) - f(c_hat, s)].
- :func:`pairwise_ltr`, :func:`listwise_ltr`: learning to rank (Mandi et al. 2022) of the
  pool by predicted vs true objective: hinge on correctly ordered pairs, and the
  cross-entropy between softmax(-f(c, S)/tau) and softmax(-f(c_hat, S)/tau).
- :func:`decision_regret`: decision regret f(c, w(c_hat)) - f(c, w*) through a differentiable
  decision (QPTL point decision, or Pred-DFL+'s CVaR decision over Gaussian samples).

The batch losses built on them are in :mod:`tailjax.dfl.baselines.losses`.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from tailjax.dfl.problems.base import DecisionProblem, objective

Vector = Float[Array, " d"]
Pool = Float[Array, "S d"]  # feasible solutions, w* included
Scalar = Float[Array, ""]

__all__ = [
    "mse",
    "spo_plus",
    "nce",
    "contrastive_map",
    "pairwise_ltr",
    "listwise_ltr",
    "decision_regret",
]


def mse(c_hat: Vector, c: Vector) -> Scalar:
    """Mean squared error of the prediction."""
    return jnp.mean((c_hat - c) ** 2)


def spo_plus(
    c_hat: Vector,
    c: Vector,
    w_star: Vector,
    problem: DecisionProblem,
    oracle: Callable[[Array], Array],
) -> Scalar:
    """SPO+ loss; its gradient in ``c_hat`` is 2 sign (w* - w_tilde) (Danskin)."""
    v = 2.0 * c_hat - c
    w_tilde = jax.lax.stop_gradient(oracle(v))
    return objective(problem, v, w_star) - objective(problem, v, w_tilde)


def _pool_objectives(problem, c, pool):
    return jax.vmap(lambda s: objective(problem, c, s))(pool)


def nce(c_hat: Vector, w_star: Vector, pool: Pool, problem: DecisionProblem) -> Scalar:
    """mean_s [f(c_hat, w*) - f(c_hat, s)] over the pool ``(S, d)``."""
    return objective(problem, c_hat, w_star) - jnp.mean(_pool_objectives(problem, c_hat, pool))


def contrastive_map(c_hat: Vector, w_star: Vector, pool: Pool, problem: DecisionProblem) -> Scalar:
    """max_s [f(c_hat, w*) - f(c_hat, s)]: w* against the pool's best under ``c_hat``."""
    return objective(problem, c_hat, w_star) - jnp.min(_pool_objectives(problem, c_hat, pool))


def pairwise_ltr(
    c_hat: Vector, c: Vector, pool: Pool, problem: DecisionProblem, margin: float = 0.1
) -> Scalar:
    """Mean hinge max(0, margin + f(c_hat, s_i) - f(c_hat, s_j)) over pairs with
    f(c, s_i) < f(c, s_j) (pool includes w*)."""
    true = _pool_objectives(problem, c, pool)
    pred = _pool_objectives(problem, c_hat, pool)
    better = (true[:, None] < true[None, :]).astype(pred.dtype)
    hinge = jnp.maximum(0.0, margin + pred[:, None] - pred[None, :])
    return jnp.sum(better * hinge) / jnp.maximum(jnp.sum(better), 1.0)


def listwise_ltr(
    c_hat: Vector, c: Vector, pool: Pool, problem: DecisionProblem, temperature: float = 1.0
) -> Scalar:
    """Cross-entropy between the pool's softmax rankings under true and predicted costs."""
    true = _pool_objectives(problem, c, pool)
    pred = _pool_objectives(problem, c_hat, pool)
    p_true = jax.nn.softmax(-true / temperature)
    return -jnp.sum(p_true * jax.nn.log_softmax(-pred / temperature))


def decision_regret(w: Vector, c: Vector, w_star: Vector, problem: DecisionProblem) -> Scalar:
    """f(c, w) - f(c, w*) for a differentiable decision ``w``."""
    return objective(problem, c, w) - objective(problem, c, w_star)

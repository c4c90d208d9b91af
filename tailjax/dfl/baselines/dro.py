"""Diff-DRO: decision-focused learning through a differentiable distributionally robust
CVaR layer, in the moment-based (second-order-cone) form of Ma, Ning & Du, "Differentiable
Distributionally Robust Optimization Layers" (ICML 2024), with continuous decisions.

The point predictor gives the centre ``c_hat`` of the ambiguity set

    P(c_hat) = { P : ||Sigma^(-1/2) (E_P c - c_hat)|| <= radius,  Cov_P c <= Sigma },

and the decision minimises the worst-case CVaR over it of the realised cost
``f(c, w) = sign c^T w + w^T P w``. Over all laws with a given mean m and covariance Sigma,
the largest CVaR at ``tail_prob`` a of ``sign c^T w`` is ``sign m^T w + sqrt((1 - a) / a)
||Sigma^(1/2) w||`` (attained by a two-point law), and the worst mean in the ellipsoid adds
``radius ||Sigma^(1/2) w||``, so

    w_DRO(c_hat) = argmin_{w in W}  sign c_hat^T w + w^T P w + kappa ||Sigma^(1/2) w||,
    kappa = sqrt((1 - a) / a) + radius,

a second-order-cone programme solved, and differentiated implicitly, by
:func:`tailjax.dfl.kappa_decision`. :func:`diff_dro_loss` trains the predictor on the
regret ``f(c, w_DRO(c_hat)) - f(c, w*(c))`` of the realised costs; ``Sigma`` is fixed from
the training data (:func:`residual_covariance`: the covariance of the residuals of a
least-squares fit of the costs on the features).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import check_open_unit, check_positive
from tailjax.dfl.baselines import surrogates as S
from tailjax.dfl.baselines.losses import ApplyFn, DFLBatch, Loss, Oracle, _mean_over_batch
from tailjax.dfl.exact import kappa_decision
from tailjax.dfl.problems.base import DecisionProblem

__all__ = ["worst_case_cvar_multiplier", "moment_dro_decision", "diff_dro_loss", "residual_covariance"]


def worst_case_cvar_multiplier(tail_prob: float, radius: float = 0.0) -> float:
    """kappa = sqrt((1 - a) / a) + radius: the worst-case CVaR_a of ``c^T w`` over the
    ambiguity set is ``c_hat^T w + kappa ||Sigma^(1/2) w||`` (module docstring)."""
    check_open_unit(tail_prob, "tail_prob", closed_right=True)
    check_positive(radius, "radius", allow_zero=True)
    a = float(tail_prob)
    return math.sqrt((1.0 - a) / a) + float(radius)


def moment_dro_decision(
    problem: DecisionProblem,
    c_hat: Float[ArrayLike, " d"],
    cov: Float[ArrayLike, "d d"],
    tail_prob: float,
    *,
    radius: float = 0.0,
    root_steps: int = 60,
    iterations: int = 40,
) -> Float[Array, " d"]:
    """The worst-case-CVaR decision over the moment ambiguity set around ``c_hat`` (one
    instance, ``jax.vmap`` over predictions); differentiable in ``c_hat`` and ``cov``.
    ``tail_prob`` (the paper's alpha, concrete) in (0, 1], ``radius >= 0``; ``cov`` positive
    definite."""
    if jnp.shape(c_hat) != (problem.dim,):
        raise ValueError(f"c_hat must have shape ({problem.dim},) (one prediction; vmap over predictions), "
                         f"got {jnp.shape(c_hat)}")
    kappa = worst_case_cvar_multiplier(tail_prob, radius)
    return kappa_decision(problem, c_hat, cov, kappa, root_steps=root_steps, iterations=iterations)


def diff_dro_loss(params: Any, batch: DFLBatch, key: Array, *, apply_fn: ApplyFn,
                  problem: DecisionProblem, oracle: Oracle | None = None, cov: Float[ArrayLike, "d d"],
                  tail_prob: float, radius: float = 0.0, root_steps: int = 40, iterations: int = 40) -> Loss:
    """Diff-DRO: mean regret ``f(c, w_DRO(c_hat)) - f(c, w*)`` of the distributionally robust
    decision at the prediction (module docstring); ``oracle`` unused."""
    kappa = worst_case_cvar_multiplier(tail_prob, radius)
    cov = jnp.asarray(cov)

    def one(c_hat, c, w_star, k):
        w = kappa_decision(problem, c_hat, cov.astype(c_hat.dtype), kappa, root_steps=root_steps,
                           iterations=iterations)
        return S.decision_regret(w, c, w_star, problem)

    return _mean_over_batch(one, params, batch, key, apply_fn)


def residual_covariance(features: Float[ArrayLike, "n p"], costs: Float[ArrayLike, "n d"], *,
                        shrinkage: float = 0.05) -> Float[np.ndarray, "d d"]:
    """Sigma of the ambiguity set from training data: the covariance of the residuals of the
    least-squares fit ``costs ~ [1, features]`` (``n - p - 1`` degrees of freedom, ridge-free;
    needs ``n > p + 1``), shrunk towards its diagonal by ``shrinkage`` in [0, 1] so that it is
    positive definite. numpy float64."""
    x, c = np.asarray(features, np.float64), np.asarray(costs, np.float64)
    if x.ndim != 2 or c.ndim != 2 or x.shape[0] != c.shape[0]:
        raise ValueError(f"features and costs must be (n, p) and (n, d) with the same n, got {x.shape} and {c.shape}")
    n, p = x.shape
    if p == 0 or c.shape[1] == 0:
        raise ValueError(f"features and costs need at least one column, got {x.shape} and {c.shape}")
    if n <= p + 1:
        raise ValueError(f"residual_covariance needs more rows than features + 1, got n = {n}, p = {p}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(c))):
        raise ValueError("features and costs must be finite")
    if not 0.0 <= float(shrinkage) <= 1.0:
        raise ValueError(f"shrinkage must lie in [0, 1], got {shrinkage}")
    design = np.concatenate([np.ones((n, 1)), x], axis=1)
    coef, *_ = np.linalg.lstsq(design, c, rcond=None)
    resid = c - design @ coef
    cov = resid.T @ resid / (n - p - 1)
    cov = (1.0 - shrinkage) * cov + shrinkage * np.diag(np.diag(cov))
    if np.min(np.linalg.eigvalsh(cov)) <= 0.0:
        raise ValueError("the residual covariance is not positive definite (a constant cost column?); "
                         "raise shrinkage or drop the column")
    return cov

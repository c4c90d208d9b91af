"""The Pred-DFL baselines by name: the registry of the benchmarks (method name -> loss), the
options each loss takes, and the training recipe of the Gen-DFL paper's comparisons (a
linear predictor, Adam, batch 32, a number of epochs).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np

from tailjax.dfl import (
    ProblemInstance,
    baseline_decisions,
    contrastive_map_loss,
    dfl_plus_loss,
    dfl_plus_sigma,
    fit_baseline,
    listwise_ltr_loss,
    mse_loss,
    nce_loss,
    pairwise_ltr_loss,
    qptl_loss,
    spo_plus_loss,
)
from tailjax.nn import LinearPredictor
from tailjax.training import FitResult

__all__ = ["BASELINES", "METHODS", "POOL_METHODS", "loss_options", "TrainedBaseline", "train_baseline",
           "decide_baseline"]

BASELINES = {
    "mse": mse_loss,  # two-stage PTO
    "spo+": spo_plus_loss,
    "nce": nce_loss,
    "map": contrastive_map_loss,
    "pairwise": pairwise_ltr_loss,
    "listwise": listwise_ltr_loss,
    "dfl": qptl_loss,  # QPTL, reg = problem.reg
    "dfl+": dfl_plus_loss,  # Pred-DFL+
}
METHODS = tuple(BASELINES)
POOL_METHODS = ("nce", "map", "pairwise", "listwise")  # losses that read the solution cache


def loss_options(method: str, *, tail_prob: float = 1.0, num_samples: int = 16, sigma: Any = None,
                 pool_size: int = 32, margin: float = 0.1, temperature: float = 1.0) -> dict:
    """The keyword options of ``BASELINES[method]`` (``tail_prob`` is the paper's alpha)."""
    if method not in BASELINES:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method in POOL_METHODS:
        extra = {"pairwise": {"margin": margin}, "listwise": {"temperature": temperature}}
        return {"pool_size": pool_size, **extra.get(method, {})}
    if method == "dfl+":
        return {"sigma": sigma, "tail_prob": tail_prob, "num_samples": num_samples}
    return {}


class TrainedBaseline(NamedTuple):
    method: str
    predictor: Any
    params: Any
    sigma: float | None  # Pred-DFL+'s sampling scale (None: point decisions)
    result: FitResult


def train_baseline(method: str, key: jax.Array, instance: ProblemInstance, features: np.ndarray,
                   costs: np.ndarray, *, epochs: int = 10, batch_size: int = 32, learning_rate: float = 1e-2,
                   tail_prob: float = 1.0, num_samples: int = 16, solve_ratio: float = 0.0,
                   predictor: Any = None, **options: Any) -> TrainedBaseline:
    """Train ``method`` for ``epochs`` epochs (a linear predictor unless given); Pred-DFL+'s
    sigma is half the mean per-coordinate sd of the training costs; ``solve_ratio`` applies
    to the pool methods only."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    sigma = dfl_plus_sigma(costs) if method == "dfl+" else None
    predictor = LinearPredictor(np.shape(costs)[1]) if predictor is None else predictor
    num_steps = epochs * (np.shape(features)[0] // batch_size)
    result = fit_baseline(
        key, predictor, instance, features, costs, loss=BASELINES[method], num_steps=num_steps,
        batch_size=batch_size, learning_rate=learning_rate,
        solve_ratio=solve_ratio if method in POOL_METHODS else 0.0,
        **loss_options(method, tail_prob=tail_prob, num_samples=num_samples, sigma=sigma, **options),
    )
    return TrainedBaseline(method, predictor, result.state.params, sigma, result)


def decide_baseline(trained: TrainedBaseline, features: np.ndarray, instance: ProblemInstance, *,
                    tail_prob: float = 1.0, key: jax.Array | None = None, num_samples: int = 64):
    """Evaluation decisions ``(N, d)`` of a trained baseline (``reg = 0``)."""
    return baseline_decisions(trained.predictor, trained.params, features, instance, sigma=trained.sigma,
                              tail_prob=tail_prob, key=key, num_samples=num_samples)

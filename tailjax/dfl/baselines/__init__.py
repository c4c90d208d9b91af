"""Pred-DFL baselines: point predictors trained by two-stage MSE (PTO), SPO+, NCE, MAP,
pairwise/listwise learning to rank, QPTL (``dfl``) and Pred-DFL+ (``dfl+``).

Each is ``loss(params, batch, key)`` (:func:`make_loss`), trained by the optax kernel
:func:`baseline_kernel` and the :func:`fit_baseline` helper (built on
:func:`tailjax.training.fit`); :func:`baseline_decisions` gives evaluation decisions.
"""

from tailjax.dfl.baselines.losses import METHODS, DFLBatch, make_loss
from tailjax.dfl.baselines.surrogates import (
    contrastive_map,
    listwise_ltr,
    mse,
    nce,
    pairwise_ltr,
    regret_loss,
    spo_plus,
)
from tailjax.dfl.baselines.training import (
    BaselineFit,
    BaselineInfo,
    BaselineState,
    baseline_decisions,
    baseline_kernel,
    fit_baseline,
    minibatches,
)

__all__ = [
    "METHODS",
    "DFLBatch",
    "make_loss",
    "mse",
    "spo_plus",
    "nce",
    "contrastive_map",
    "pairwise_ltr",
    "listwise_ltr",
    "regret_loss",
    "BaselineState",
    "BaselineInfo",
    "BaselineFit",
    "baseline_kernel",
    "fit_baseline",
    "baseline_decisions",
    "minibatches",
]

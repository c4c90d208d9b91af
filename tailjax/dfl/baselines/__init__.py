"""Pred-DFL baselines: point predictors trained by two-stage MSE (PTO), SPO+, NCE, MAP,
pairwise/listwise learning to rank, QPTL, Pred-DFL+ and Diff-DRO (a distributionally robust
CVaR layer, :mod:`~tailjax.dfl.baselines.dro`).

Each method is a loss on the convention ``loss(params, batch, key, *, apply_fn, problem,
oracle, ...) -> (value, aux)`` (:mod:`~tailjax.dfl.baselines.losses`), built from the
per-instance surrogates (:mod:`~tailjax.dfl.baselines.surrogates`); :func:`baseline_kernel`
(a :class:`~tailjax.base.Kernel` on :func:`tailjax.training.gradient_kernel` with a
solution cache) trains it, :func:`fit_baseline` drives it with :func:`tailjax.training.fit`,
and :func:`baseline_decisions` gives evaluation decisions.
"""

from tailjax.dfl.baselines.dro import (
    diff_dro_loss,
    moment_dro_decision,
    residual_covariance,
    worst_case_cvar_multiplier,
)
from tailjax.dfl.baselines.losses import (
    DFLBatch,
    contrastive_map_loss,
    dfl_plus_loss,
    listwise_ltr_loss,
    log_mse_loss,
    mse_loss,
    nce_loss,
    pairwise_ltr_loss,
    qptl_loss,
    spo_plus_loss,
)
from tailjax.dfl.baselines.surrogates import (
    contrastive_map,
    decision_regret,
    listwise_ltr,
    mse,
    nce,
    pairwise_ltr,
    spo_plus,
)
from tailjax.dfl.baselines.training import (
    BaselineState,
    baseline_decisions,
    baseline_kernel,
    dfl_plus_sigma,
    fit_baseline,
)

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
    "diff_dro_loss",
    "moment_dro_decision",
    "worst_case_cvar_multiplier",
    "residual_covariance",
    "mse",
    "spo_plus",
    "nce",
    "contrastive_map",
    "pairwise_ltr",
    "listwise_ltr",
    "decision_regret",
    "BaselineState",
    "baseline_kernel",
    "fit_baseline",
    "baseline_decisions",
    "dfl_plus_sigma",
]

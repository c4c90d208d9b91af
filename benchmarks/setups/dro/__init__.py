"""GAS-DRO experiment set-ups: the two paper tasks (carbon-intensity forecasting under two
protocols, digits under shift) with their constants, the method registry that trains every
compared method the same way (early stopping on a validation score), the recipes both use
(generator pre-training, per-sample losses, evaluation, reference forecasts) and the
report's statistics. Experiment code on tailjax's public API; the library needs none of it.
"""

from benchmarks.setups.dro.carbon import PROTOCOLS, carbon_setup, reconstruction_sd, reference_rows
from benchmarks.setups.dro.methods import (
    METHODS,
    Method,
    MethodSettings,
    Resources,
    build_method,
    step_bytes,
    train_method,
    with_learning_rates,
)
from benchmarks.setups.dro.recipes import (
    accuracy,
    classification_loss,
    evaluate,
    forecast_loss,
    persistence_mse,
    scorer,
    seasonal_naive_mse,
    train_ddpm,
    train_generator,
    train_vae,
)
from benchmarks.setups.dro.report import BASELINES, REFERENCES, best_baseline, compare, comparison_table, seed_table, verdict
from benchmarks.setups.dro.tasks import (
    PAPER_NOISE_LEVEL,
    Setup,
    digits_setup,
    estimate_reconstruction,
    matched_last_steps,
)

__all__ = [
    "METHODS",
    "Method",
    "MethodSettings",
    "Resources",
    "build_method",
    "step_bytes",
    "train_method",
    "with_learning_rates",
    "accuracy",
    "classification_loss",
    "evaluate",
    "forecast_loss",
    "persistence_mse",
    "scorer",
    "seasonal_naive_mse",
    "train_ddpm",
    "train_generator",
    "train_vae",
    "PAPER_NOISE_LEVEL",
    "PROTOCOLS",
    "Setup",
    "carbon_setup",
    "digits_setup",
    "estimate_reconstruction",
    "matched_last_steps",
    "reconstruction_sd",
    "reference_rows",
    "BASELINES",
    "REFERENCES",
    "best_baseline",
    "compare",
    "comparison_table",
    "seed_table",
    "verdict",
]

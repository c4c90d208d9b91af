"""GAS-DRO experiment set-ups: the two paper tasks (carbon-intensity forecasting and digits
under shift) with their constants, the method registry that trains every compared method
the same way, and the recipes both use (generator pre-training, per-sample losses,
evaluation). Experiment code on tailjax's public API; the library needs none of it.
"""

from benchmarks.setups.dro.methods import (
    METHODS,
    Method,
    MethodSettings,
    Resources,
    build_method,
    step_bytes,
    train_method,
)
from benchmarks.setups.dro.recipes import (
    accuracy,
    classification_loss,
    evaluate,
    forecast_loss,
    train_ddpm,
    train_generator,
    train_vae,
)
from benchmarks.setups.dro.tasks import (
    PAPER_NOISE_LEVEL,
    Setup,
    carbon_setup,
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
    "accuracy",
    "classification_loss",
    "evaluate",
    "forecast_loss",
    "train_ddpm",
    "train_generator",
    "train_vae",
    "PAPER_NOISE_LEVEL",
    "Setup",
    "carbon_setup",
    "digits_setup",
    "estimate_reconstruction",
    "matched_last_steps",
]

"""Distributionally robust optimization over generative ambiguity sets (GAS-DRO) and the
classic DRO baselines, all as pure losses/kernels over the same predictor loop.

- :mod:`tailjax.dro.ambiguity`: DDPM and VAE (Appendix B) ambiguity sets.
- :mod:`tailjax.dro.inner`: PPO / REINFORCE inner maximisation and dual ascent.
- :mod:`tailjax.dro.gas_dro`: Algorithm 1 (inner max, outer min) and its ``fit`` helper.
- baselines: :mod:`~tailjax.dro.erm` (ML, DML), :mod:`~tailjax.dro.kl_dro`,
  :mod:`~tailjax.dro.wasserstein` (W-DRO), :mod:`~tailjax.dro.dragen`, :mod:`~tailjax.dro.pdro`;
  the shared loop in :mod:`~tailjax.dro.predictor`.
- data: :mod:`tailjax.dro.data` (carbon intensity, USPS and scikit-learn digits) and
  :mod:`tailjax.dro.corruptions` (Gaussian, Perlin, cutout).
"""

from tailjax.dro.ambiguity import (
    AmbiguitySet,
    DDPMTrajectory,
    VAETrajectory,
    ddpm_ambiguity_set,
    vae_ambiguity_set,
)
from tailjax.dro.dragen import dragen_objective
from tailjax.dro.erm import dml_dataset, erm_objective
from tailjax.dro.gas_dro import (
    GasDroBatch,
    GasDroConfig,
    GasDroInfo,
    GasDroState,
    fit_gas_dro,
    gas_dro,
    select_predictor,
)
from tailjax.dro.inner import (
    InnerInfo,
    InnerState,
    build_inner_step,
    dual_update,
    ppo_ratio,
    ppo_surrogate,
    reinforce_surrogate,
    standardize,
)
from tailjax.dro.kl_dro import kl_dro_init, kl_dro_objective, kl_dual, kl_worst_case
from tailjax.dro.pdro import PDroState, fit_gmm, gmm_log_density, pdro
from tailjax.dro.predictor import fit_predictor, minibatches, predictor_kernel
from tailjax.dro.wasserstein import penalty_ascent, wasserstein_objective

__all__ = [
    "AmbiguitySet",
    "DDPMTrajectory",
    "VAETrajectory",
    "ddpm_ambiguity_set",
    "vae_ambiguity_set",
    "build_inner_step",
    "InnerState",
    "InnerInfo",
    "ppo_ratio",
    "ppo_surrogate",
    "reinforce_surrogate",
    "standardize",
    "dual_update",
    "GasDroConfig",
    "GasDroBatch",
    "GasDroState",
    "GasDroInfo",
    "gas_dro",
    "select_predictor",
    "fit_gas_dro",
    "erm_objective",
    "dml_dataset",
    "kl_dual",
    "kl_worst_case",
    "kl_dro_init",
    "kl_dro_objective",
    "wasserstein_objective",
    "penalty_ascent",
    "dragen_objective",
    "pdro",
    "PDroState",
    "gmm_log_density",
    "fit_gmm",
    "predictor_kernel",
    "fit_predictor",
    "minibatches",
]

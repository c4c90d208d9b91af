"""Distributionally robust optimization over generative ambiguity sets (GAS-DRO) and the
classic DRO baselines, as losses and kernels on :mod:`tailjax.training`.

Every method starts from the predictor's per-sample loss ``loss_fn(w, sample)`` (the
paper's f(w, x)):

- losses in the library's ``loss(params, batch, key) -> (value, aux)`` order, for
  :func:`tailjax.training.gradient_kernel`: :func:`erm_loss` (ML; DML on
  :func:`dml_dataset`), :func:`kl_dro_loss`, :func:`wasserstein_loss` (W-DRO),
  :func:`dragen_loss`, and the pieces of the kernels below;
- kernels with extra state: :func:`gas_dro_kernel` (Algorithm 1: the PPO inner
  maximisation :func:`inner_max_kernel` with dual ascent on mu, then the outer predictor
  steps; :func:`fit_gas_dro` runs it with checkpoints) and :func:`pdro_kernel` (P-DRO);
- ambiguity sets: :func:`ddpm_ambiguity_set`, :func:`vae_ambiguity_set` (Appendix B);
- data: carbon intensity, USPS, scikit-learn digits and MNIST-subset loaders (small carbon
  and USPS subsets ship with the package for use without $TAILJAX_DATA), image and series
  corruptions.

Example (ML and GAS-DRO on the same predictor)::

    ml = gradient_kernel(functools.partial(erm_loss, loss_fn=f), optax.adam(1e-3))
    fit(ml, ml.init(w0), key, 1000, batches=minibatches(k, data, 64))
    gas = gas_dro_kernel(ambiguity_set, f, optax.adam(1e-3), optax.adam(1e-5), config)
    fit_gas_dro(key, gas, gas.init(w0, theta0), nominal_data, num_steps=1000, config=config)
"""

from tailjax.dro.ambiguity import (
    AmbiguitySet,
    DDPMTrajectory,
    VAETrajectory,
    ddpm_ambiguity_set,
    vae_ambiguity_set,
)
from tailjax.dro.corruptions import (
    corrupt,
    corrupt_series,
    cutout,
    gaussian_noise,
    perlin_field_1d,
    perlin_noise,
)
from tailjax.dro.data import (
    ZONES,
    CarbonTask,
    available_zone_years,
    carbon_task,
    load_carbon_intensity,
    load_mnist_subset,
    load_sklearn_digits,
    load_usps,
    sliding_windows,
    wasserstein_1d,
)
from tailjax.dro.dragen import dragen_loss
from tailjax.dro.erm import dml_dataset, erm_loss
from tailjax.dro.gas_dro import (
    GasDroBatch,
    GasDroConfig,
    GasDroInfo,
    GasDroState,
    OuterBatch,
    fit_gas_dro,
    gas_dro_kernel,
    gas_dro_outer_loss,
    select_predictor,
)
from tailjax.dro.inner import (
    InnerBatch,
    InnerInfo,
    InnerState,
    PolicyBatch,
    dual_update,
    inner_max_kernel,
    lagrangian_loss,
    ppo_ratio,
    ppo_surrogate,
    reinforce_surrogate,
    standardize,
)
from tailjax.dro.kl_dro import kl_dro_loss, kl_dro_params, kl_dual, kl_tilted_divergence, kl_worst_case
from tailjax.dro.pdro import (
    PDroAdversaryBatch,
    PDroInfo,
    PDroState,
    gmm_log_density,
    gmm_mle,
    pdro_adversary_loss,
    pdro_kernel,
    reweighted_loss,
)
from tailjax.dro.wasserstein import penalty_ascent, wasserstein_loss

__all__ = [
    # ambiguity sets
    "AmbiguitySet",
    "DDPMTrajectory",
    "VAETrajectory",
    "ddpm_ambiguity_set",
    "vae_ambiguity_set",
    # GAS-DRO
    "GasDroConfig",
    "GasDroBatch",
    "GasDroState",
    "GasDroInfo",
    "OuterBatch",
    "gas_dro_kernel",
    "gas_dro_outer_loss",
    "select_predictor",
    "fit_gas_dro",
    # its inner maximisation
    "inner_max_kernel",
    "InnerBatch",
    "InnerState",
    "InnerInfo",
    "PolicyBatch",
    "lagrangian_loss",
    "ppo_ratio",
    "ppo_surrogate",
    "reinforce_surrogate",
    "standardize",
    "dual_update",
    # baselines
    "erm_loss",
    "dml_dataset",
    "kl_dual",
    "kl_tilted_divergence",
    "kl_worst_case",
    "kl_dro_params",
    "kl_dro_loss",
    "penalty_ascent",
    "wasserstein_loss",
    "dragen_loss",
    "pdro_kernel",
    "PDroState",
    "PDroInfo",
    "PDroAdversaryBatch",
    "reweighted_loss",
    "pdro_adversary_loss",
    "gmm_log_density",
    "gmm_mle",
    # data
    "ZONES",
    "CarbonTask",
    "carbon_task",
    "available_zone_years",
    "load_carbon_intensity",
    "load_usps",
    "load_sklearn_digits",
    "load_mnist_subset",
    "sliding_windows",
    "wasserstein_1d",
    "corrupt",
    "gaussian_noise",
    "perlin_noise",
    "cutout",
    "corrupt_series",
    "perlin_field_1d",
]

"""Tail-aware fine-tuning of flow models: flow matching, ODE and memoryless-SDE sampling,
adjoint matching, TFFT (two-stage CVaR fine-tuning), EXP-FT and FDC.

Modules: ``schedule`` (interpolants, kappa/eta/sigma), ``gaussian`` (exact Gaussian and mixture
velocities), ``matching`` (flow matching), ``ode`` and ``sde`` (samplers), ``girsanov`` (path
weights), ``adjoint`` (adjoint matching), ``finetune`` (EXP-FT, driver), ``tfft`` and ``fdc``.
"""

from tailjax.flows.adjoint import (
    AdjointMatching,
    AdjointMatchingInfo,
    AdjointMatchingState,
    adjoint_matching,
    adjoint_matching_loss,
    lean_adjoint,
)
from tailjax.flows.fdc import fdc_fine_tune, fdc_grid, fdc_operator, grid_distances
from tailjax.flows.finetune import check_reward_values, exp_ft, fine_tune
from tailjax.flows.gaussian import (
    gaussian_mixture_log_prob,
    gaussian_mixture_velocity,
    gaussian_velocity,
    tilt_gaussian_mixture,
)
from tailjax.flows.girsanov import memoryless_sample_and_log_weight, path_log_weight
from tailjax.flows.matching import fit_flow_matching, flow_matching, flow_matching_loss
from tailjax.flows.ode import ode_log_prob, ode_sample, ode_sample_and_log_prob, ode_solve, uniform_time_grid
from tailjax.flows.schedule import (
    Schedule,
    cosine_schedule,
    data_prediction,
    eta,
    kappa,
    memoryless_sigma,
    rectified_flow,
)
from tailjax.flows.sde import memoryless_coefficients, memoryless_sample, memoryless_solve
from tailjax.flows.tfft import beta_annealing, tfft, tfft_fine_tune, tfft_reward, tfft_threshold

__all__ = [
    "Schedule", "rectified_flow", "cosine_schedule", "kappa", "eta", "memoryless_sigma", "data_prediction",
    "gaussian_velocity", "gaussian_mixture_velocity", "gaussian_mixture_log_prob", "tilt_gaussian_mixture",
    "flow_matching_loss", "flow_matching", "fit_flow_matching",
    "uniform_time_grid", "ode_solve", "ode_sample", "ode_sample_and_log_prob", "ode_log_prob",
    "memoryless_coefficients", "memoryless_solve", "memoryless_sample",
    "path_log_weight", "memoryless_sample_and_log_weight",
    "lean_adjoint", "adjoint_matching_loss", "adjoint_matching", "AdjointMatching", "AdjointMatchingState",
    "AdjointMatchingInfo",
    "exp_ft", "fine_tune", "check_reward_values",
    "tfft_threshold", "tfft_reward", "beta_annealing", "tfft", "tfft_fine_tune",
    "fdc_operator", "fdc_grid", "fdc_fine_tune", "grid_distances",
]

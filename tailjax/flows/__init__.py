"""Tail-aware fine-tuning of flow models: flow matching, ODE and memoryless-SDE sampling,
adjoint matching, TFFT (two-stage CVaR fine-tuning), EXP-FT and FDC.

Every trainer is a :class:`~tailjax.base.Kernel` on :func:`tailjax.training.gradient_kernel`
driven by :func:`tailjax.training.fit`: :func:`flow_matching` (loss
:func:`flow_matching_loss`) pre-trains a velocity field, :func:`adjoint_matching` (loss
:func:`adjoint_matching_loss`) fine-tunes it towards p_base exp(r / temperature), and
:func:`exp_ft`, :func:`tfft` are adjoint-matching kernels on the plain reward and on TFFT's
pseudo-reward. :func:`fit_flow_matching`, :func:`fit_adjoint_matching`,
:func:`tfft_fine_tune` and :func:`fdc_fine_tune` run them end to end, with checkpoints.

Names: ``temperature`` is the papers' alpha (the KL temperature), ``quantile_level`` TFFT's
beta, ``side`` ``"upper"`` (right-CVaR) or ``"lower"`` (left-CVaR).

Modules: ``schedule`` (interpolants, kappa/eta/sigma), ``diffusion`` (VP / DDPM
noise-prediction models as velocity fields), ``gaussian`` (exact Gaussian and mixture
velocities), ``matching`` (flow matching), ``ode`` and ``sde`` (samplers), ``girsanov`` (path
weights), ``adjoint`` (adjoint matching), ``behaviour`` (off-policy path mixtures),
``finetune`` (EXP-FT and the fit helper), ``stage1`` (TFFT's thresholds and their
diagnostics), ``tfft`` (the Stage 2 kernel), ``tfft_fine_tune`` (Algorithm 1, safe by
default) and ``fdc``.

Shapes and contexts: samples are ``(n, *event)`` (vectors ``(d,)`` or images ``(H, W, C)``;
``dim`` arguments take an int or an event shape), and an optional per-sample context (a
class label, an embedding) reaches every field as its last argument: ``velocity_fn(params,
x, t, c)``, see :mod:`tailjax.flows._fields`.
"""

from tailjax.flows._fields import cast_field
from tailjax.flows.adjoint import (
    AdjointMatchingBatch,
    AdjointMatchingInfo,
    adjoint_matching,
    adjoint_matching_loss,
    lean_adjoint,
)
from tailjax.flows.diffusion import ddpm_velocity, velocity_from_noise_prediction, vp_schedule_from_ddpm
from tailjax.flows.fdc import (
    FDCGridResult,
    FDCResult,
    GridDistances,
    default_eta,
    fdc_fine_tune,
    fdc_grid,
    fdc_operator,
    grid_distances,
)
from tailjax.flows.finetune import exp_ft, fit_adjoint_matching
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
from tailjax.flows.sde import MemorylessCoefficients, memoryless_coefficients, memoryless_sample, memoryless_solve
from tailjax.flows.stage1 import TFFTThreshold, tfft_stratified_threshold, tfft_threshold, tilt_diagnostics
from tailjax.flows.tfft import quantile_level_annealing, tfft, tfft_reward
from tailjax.flows.tfft_fine_tune import (
    TFFTDiagnosticError,
    TFFTDiagnostics,
    TFFTResult,
    TFFTWarning,
    tfft_fine_tune,
)

__all__ = [
    "velocity_from_noise_prediction", "vp_schedule_from_ddpm", "ddpm_velocity",
    "Schedule", "rectified_flow", "cosine_schedule", "kappa", "eta", "memoryless_sigma", "data_prediction",
    "gaussian_velocity", "gaussian_mixture_velocity", "gaussian_mixture_log_prob", "tilt_gaussian_mixture",
    "flow_matching_loss", "flow_matching", "fit_flow_matching",
    "uniform_time_grid", "ode_solve", "ode_sample", "ode_sample_and_log_prob", "ode_log_prob",
    "MemorylessCoefficients", "memoryless_coefficients", "memoryless_solve", "memoryless_sample",
    "path_log_weight", "memoryless_sample_and_log_weight",
    "cast_field", "lean_adjoint", "AdjointMatchingBatch", "adjoint_matching_loss", "adjoint_matching", "AdjointMatchingInfo",
    "exp_ft", "fit_adjoint_matching",
    "TFFTThreshold", "tfft_threshold", "tfft_stratified_threshold", "tilt_diagnostics",
    "tfft_reward", "quantile_level_annealing", "tfft", "TFFTResult", "TFFTDiagnostics", "TFFTWarning",
    "TFFTDiagnosticError", "tfft_fine_tune",
    "fdc_operator", "fdc_grid", "FDCGridResult", "default_eta", "fdc_fine_tune", "FDCResult",
    "grid_distances", "GridDistances",
]

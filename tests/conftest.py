"""Shared fixtures: float32 by default, float64 on request, strict dtype promotion."""

import os

# Most tests are dominated by XLA's CPU compile time; LLVM's optimisation passes are the bulk
# of it and buy little at test sizes (the fast suite's budget is 10 minutes on 2 cores).
# Level 1, not 0: at 0 a float64 density quadrature in tests/importance came out 2e-3 off
# (1.0019 instead of 1.0000), at 1 it gives the default level's values.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=1").strip()

import jax  # noqa: E402
import pytest

jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture
def x64():
    """Run the test body with 64-bit floats enabled."""
    with jax.enable_x64(True):
        yield


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    """Parametrise a test over float32 and float64 (x64 enabled for the latter)."""
    if request.param == "float64":
        with jax.enable_x64(True):
            yield jax.numpy.float64
    else:
        yield jax.numpy.float32


@pytest.fixture(scope="session")
def data_dir():
    """Folder of the real data sets: $TAILJAX_DATA, else ../shared/data beside the repo."""
    import os
    import pathlib

    env = os.environ.get("TAILJAX_DATA")
    path = pathlib.Path(env) if env else pathlib.Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"data folder not found at {path} (set TAILJAX_DATA)")
    return path.resolve()


# Tests of more than ~6.5 s on the 2-core CI machine (measured with --durations=0), run by
# `make test-all` only, so that the fast suite stays within its 10-minute budget there.
SLOW_ON_CI = {
    "tests/layers/test_cvar.py::test_shortest_path_cvar_matches_highs[0.05]",
    "tests/risk/test_threshold.py::test_jit_and_vmap",
    "tests/risk/test_select.py::test_pallas_kernel_in_interpret_mode",
    "tests/stochopt/test_approximation.py::test_sa_update_is_projected_sgd_with_the_step_size_schedule",
    "tests/stochopt/test_saa.py::test_level_method_certificate_on_smooth_problem_vmapped",
    "tests/dfl/test_exact.py::test_exact_regret_matches_monte_carlo_1e6",
    "tests/dro/test_setups.py::test_every_method_trains_the_same_predictor[GAS-DRO]",
    "tests/flows/test_tfft.py::test_tfft_kernel_fixed_and_annealed",
    "tests/nn/test_conditional_flow.py::test_log_det_matches_jacobian[spline]",
    "tests/stochopt/test_problems.py::test_farmer_with_random_demand_grows_linearly_and_its_lp_matches_the_closed_form",
    "tests/dro/test_inner_as_written.py::test_nominal_reference_inner_max_moves_up_and_reports_the_path_kl",
    "tests/flows/test_matching.py::test_an_nnx_velocity_field_trains_through_flow_matching",
    "tests/dro/test_inner_as_written.py::test_j_over_the_last_steps_matches_its_closed_form",
    "tests/dro/test_data.py::test_series_corruptions_touch_the_inputs_only",
    "tests/benchmarks/test_dfl_setups.py::test_named_baseline_trains_and_decides",
    "tests/flows/test_theory.py::test_stein_identity_for_every_tilt[1.0]",
    "tests/flows/test_theory.py::test_corrected_second_derivatives[lower-0.2-3.0]",
    "tests/risk/test_select.py::test_gradient_is_exact_subgradient",
    "tests/dro/test_gas_dro.py::test_vae_ambiguity_set_freezes_encoder_and_scores_decoder_density",
    "tests/test_training.py::test_sigkill_mid_run_then_resume_is_bitwise_equal",
    "tests/dfl/test_pyepo_twins.py::test_binary_knapsack_dp_and_branch_and_bound_are_exact",
    "tests/nn/test_forecasters.py::test_shapes_and_batch_consistency",
    "tests/layers/test_scaling.py::test_info_is_in_the_callers_units",
    "tests/benchmarks/test_dfl_setups.py::test_data_free_rows_are_feasible",
    "tests/benchmarks/test_dfl_setups.py::test_tuned_baseline_keeps_the_best_validation_run",
    "tests/dfl/test_baselines.py::test_every_loss_is_finite_and_differentiable_under_jit[dfl+]",
    "tests/dfl/test_baselines.py::test_fit_resume_and_decisions",
    "tests/dfl/test_exact.py::test_fresh_sample_reference_is_independent_of_the_solve",
    "tests/dfl/test_gen_dfl.py::test_cvar_gap_form_of_the_evaluation_regret",
    "tests/dfl/test_gen_dfl.py::test_kernel_step_and_decisions_under_jit_and_vmap",
    "tests/dfl/test_gen_dfl.py::test_normalized_loss_divides_the_regret_by_the_mean_proxy_cost",
    "tests/dfl/test_gen_dfl.py::test_regret_gradient_matches_finite_differences",
    "tests/dfl/test_gen_dfl_is.py::test_importance_sampling_reduces_tail_estimate_error",
    "tests/dfl/test_gen_dfl_is.py::test_is_decision_under_jit_and_vmap",
    "tests/dfl/test_gen_dfl_is.py::test_log_weights_are_the_exact_density_ratio",
    "tests/dfl/test_metrics.py::test_reference_decision_has_zero_regret_and_is_best",
    "tests/dfl/test_proxy.py::test_proxy_is_frozen_pytree_and_checkpoint_resume",
    "tests/dfl/test_pyepo_twins.py::test_risk_capped_portfolio_against_slsqp_and_kkt",
    "tests/dro/test_gas_dro.py::test_gas_dro_step_under_jit",
    "tests/dro/test_inner.py::test_inner_max_on_gaussian_toy_moves_mean_up_to_the_budget[ppo]",
    "tests/dro/test_inner.py::test_lagrangian_loss_is_minus_surrogate_plus_mu_j",
    "tests/dro/test_inner.py::test_ppo_ratio_is_one_and_gradient_equals_reinforce_at_theta_old",
    "tests/flows/test_adjoint.py::test_lean_adjoint_matches_closed_form_first_order",
    "tests/flows/test_conditioning.py::test_image_events_equal_the_flattened_computation",
    "tests/flows/test_fdc.py::test_model_level_rounds",
    "tests/flows/test_matching.py::test_learns_a_gaussian",
    "tests/flows/test_pretrained.py::test_ddpm_adapter_samples_the_data_law",
    "tests/flows/test_scale.py::test_bf16_compute_tracks_float32",
    "tests/flows/test_scale.py::test_sharded_step_equals_one_device",
    "tests/flows/test_tfft.py::test_importance_sampled_stage1_reaches_the_true_threshold",
    "tests/flows/test_tfft.py::test_stage1_threshold_is_the_quantile_of_the_tilted_target[upper-0.95]",
    "tests/flows/test_tfft.py::test_weak_stage1_warns_and_strict_raises",
    "tests/flows/test_theory.py::test_bimodal_reward_gives_two_local_maxima_of_f_left",
    "tests/layers/test_lp.py::test_lp_matches_highs_under_vmap",
    "tests/layers/test_qp.py::test_gradient_matches_finite_differences",
    "tests/layers/test_scaling.py::test_float32_energy_prices_converge_to_the_optimal_cvar",
    "tests/layers/test_scaling.py::test_float32_simplex_decision_is_invariant_to_cost_scale_and_shift[times_100]",
    "tests/layers/test_scaling.py::test_unconverged_decision_is_nan_by_default",
    "tests/layers/test_scaling.py::test_unconverged_decision_raises_on_request",
    "tests/nn/test_conditional_flow.py::test_log_det_matches_jacobian[affine]",
    "tests/nn/test_conditional_flow.py::test_log_prob_of_samples_is_consistent[affine]",
    "tests/nn/test_conditional_flow.py::test_log_prob_of_samples_is_consistent[spline]",
    "tests/nn/test_conditional_flow.py::test_log_prob_vmap_equals_batched",
    "tests/nn/test_conditional_flow.py::test_nll_training_recovers_conditional_gaussian",
    "tests/nn/test_ddpm.py::test_float32_stable_with_500_steps[underflow]",
    "tests/nn/test_ddpm.py::test_trajectory_log_prob_is_sum_of_gaussian_step_densities",
    "tests/parallel/test_parallel.py::test_four_devices_match_single_device",
    "tests/risk/test_axioms.py::test_weighted_equals_replicated",
    "tests/risk/test_empirical.py::test_gradients_against_finite_differences",
    "tests/risk/test_select.py::test_matches_sort[normal-0.5]",
    "tests/risk/test_threshold.py::test_weights_equal_replication",
    "tests/stochopt/test_problems.py::test_farmer_risk_averse_saa_matches_extensive_form",
    "tests/stochopt/test_problems.py::test_portfolio_optimum_matches_scipy",
    "tests/stochopt/test_retrospective.py::test_ra_as_written_keeps_earlier_samples_with_their_own_ratios",
    "tests/stochopt/test_saa.py::test_solve_saa_matches_highs[False-0.0]",
    "tests/test_notebooks.py::test_notebook_runs[01_tail_risk]",
    "tests/test_notebooks.py::test_notebook_runs[02_importance_sampling]",
    "tests/test_notebooks.py::test_notebook_runs[03_tfft]",
    "tests/test_notebooks.py::test_notebook_runs[04_gen_dfl]",
    "tests/test_notebooks.py::test_notebook_runs[05_gas_dro]",
    "tests/parallel/test_multiprocess.py::test_two_processes_match_one",
    "tests/dfl/test_gen_dfl.py::test_regret_term_lowers_the_regret_it_trains_on",
    "tests/dro/test_gas_dro.py::test_fit_gas_dro_resume_equals_uninterrupted_run",
    "tests/layers/test_scaling.py::test_float32_energy_scale_decisions_are_within_1e_4_of_float64",
    "tests/layers/test_scaling.py::test_float32_heavy_tailed_knapsack_converges_quickly_and_accurately",
    "tests/bad_input/test_bad_input.py::test_random_out_of_range_levels",
    "tests/bad_input/test_bad_input_dfl.py::test_bad_argument_is_rejected_or_nan[dfl.gen_dfl_mean_regret:x=nan entry]",
    "tests/bad_input/test_bad_input_dfl.py::test_bad_argument_is_rejected_or_nan[dfl.sample_decision:x=nan entry]",
    "tests/stochopt/test_saa.py::test_solve_saa_matches_highs[False-0.3]",
    "tests/nn/test_forecasters.py::test_stacked_lstm_shapes_batch_consistency_and_layers",
    "tests/dro/test_inner_as_written.py::test_frozen_prefix_makes_the_start_of_the_adversary_independent_of_theta",
    "tests/layers/test_cvar.py::test_shortest_path_cvar_matches_highs[0.3]",
    "tests/risk/test_select.py::test_matches_sort[normal-0.01]",
    "tests/layers/test_scaling.py::test_float32_solves_that_stall_return_their_best_iterate_accepted_and_accurate",
    "tests/layers/test_scaling.py::test_float32_simplex_decision_is_invariant_to_cost_scale_and_shift[plus_100]",
    "tests/layers/test_cvar.py::test_shortest_path_cvar_matches_highs[0.75]",
    "tests/risk/test_select.py::test_matches_sort[sorted-0.29]",
    "tests/bad_input/test_bad_input_dfl.py::test_bad_argument_is_rejected_or_nan[dfl.gen_dfl_loss:x=nan entry]",
    "tests/stochopt/test_saa.py::test_solve_saa_matches_highs[True-0.0]",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid in SLOW_ON_CI:
            item.add_marker(pytest.mark.slow)

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.scipy.stats import norm

from tailjax.flows.finetune import check_reward_values, exp_ft
from tailjax.flows.gaussian import gaussian_velocity
from tailjax.flows.stage1 import tfft_stratified_threshold, tfft_threshold, tilt_diagnostics
from tailjax.flows.tfft import quantile_level_annealing, tfft, tfft_reward
from tailjax.flows.tfft_fine_tune import TFFTDiagnosticError, TFFTWarning, tfft_fine_tune
from tailjax.risk import pseudo_reward, solve_threshold, var


def _tilted_cdf(r, t, beta, alpha, side, w=None):
    """P(R < t) and P(R <= t) under the tilted target p exp(r*_t / alpha)."""
    logw = pseudo_reward(r, t, beta, side) / alpha + (0.0 if w is None else jnp.log(w))
    tilt = jax.nn.softmax(logw)
    return float(jnp.sum(jnp.where(r < t, tilt, 0.0))), float(jnp.sum(jnp.where(r <= t, tilt, 0.0)))


@pytest.mark.parametrize("side,beta", [("upper", 0.95), ("lower", 0.05)])
def test_stage1_threshold_is_the_quantile_of_the_tilted_target(side, beta, x64):
    """TFFT Theorems 4.1-4.2 on an empirical distribution (a skewed one): t* is a
    beta-quantile of p*, i.e. P*(R < t*) <= beta <= P*(R <= t*)."""
    sample = lambda k, n: jax.random.gamma(k, 2.0, (n, 1))
    res = tfft_threshold(jax.random.key(0), sample, lambda x: x[0], quantile_level=beta, temperature=0.7,
                         side=side, num_samples=5000)
    below, at_or_below = _tilted_cdf(res.rewards, res.t_star, beta, 0.7, side)
    assert below - 1e-5 <= beta <= at_or_below + 1e-5
    # And it is VaR_beta of the tilted samples (the lower or upper end of the quantile set).
    tilt = jax.nn.softmax(pseudo_reward(res.rewards, res.t_star, beta, side) / 0.7)
    q = var(res.rewards, 1.0 - beta, weights=tilt) if side == "upper" else var(res.rewards, beta, weights=tilt, side="lower")
    at_q = float(jnp.sum(jnp.where(res.rewards <= q, tilt, 0.0)))
    assert float(q) <= float(res.t_star) + 1e-9 and at_q >= beta - 1e-5


def test_table4_thresholds_by_quadrature(x64):
    """r ~ N(0, 2) (prior N(0, I_2), r = x1 + x2), alpha = 1: the thresholds of TFFT's Table 4."""
    grid = jnp.linspace(-25.0, 30.0, 40001)
    w = norm.pdf(grid, scale=jnp.sqrt(2.0))
    t_r = solve_threshold(grid, 0.8, 1.0, "upper", w)
    t_l = solve_threshold(grid, 0.2, 1.0, "lower", w)
    np.testing.assert_allclose([t_r, t_l], [5.2772, 1.4572], atol=2e-3)
    for t, beta, side in ((t_r, 0.8, "upper"), (t_l, 0.2, "lower")):
        below, at_or_below = _tilted_cdf(grid, t, beta, 1.0, side, w)
        assert abs(below - beta) < 2e-3 and abs(at_or_below - beta) < 2e-3


def test_importance_sampled_stage1_reaches_the_true_threshold(x64):
    """Plain Stage 1 with 10^4 prior samples misses t* = 5.277; a defensive proposal does not."""
    scale = jnp.sqrt(2.0)
    prior = lambda k, n: scale * jax.random.normal(k, (n, 1))
    plain = tfft_threshold(jax.random.key(1), prior, lambda x: x[0], quantile_level=0.8, temperature=1.0,
                           num_samples=10000)
    assert float(plain.t_star) < 5.0

    def proposal(k, n):
        k1, k2 = jax.random.split(k)
        comp = jax.random.bernoulli(k1, 0.5, (n, 1))
        return scale * jax.random.normal(k2, (n, 1)) + 10.0 * comp.astype(scale.dtype)

    def log_weights(x):
        log_p = norm.logpdf(x[:, 0], scale=scale)
        log_q = jnp.logaddexp(log_p, norm.logpdf(x[:, 0], 10.0, scale)) + jnp.log(0.5)
        return log_p - log_q

    res = tfft_threshold(jax.random.key(2), proposal, lambda x: x[0], quantile_level=0.8, temperature=1.0,
                         num_samples=10000, log_weight_fn=log_weights)
    assert abs(float(res.t_star) - 5.2772) < 0.05
    np.testing.assert_allclose(jnp.sum(res.weights), 1.0, rtol=1e-10)
    # The stratified sample: the prior below its 99th percentile, a wide proposal N(8, 8)
    # above it with exact log-weights log p - log q.
    def wide(k, n):
        x = 2.0 * scale * jax.random.normal(k, (n, 1)) + 8.0
        return x, norm.logpdf(x[:, 0], scale=scale) - norm.logpdf(x[:, 0], 8.0, 2.0 * scale)

    strat = tfft_stratified_threshold(jax.random.key(4), prior, wide, lambda x: x[0], quantile_level=0.8,
                                      temperature=1.0, num_samples=10000)
    assert abs(float(strat.t_star) - 5.2772) < 0.02
    np.testing.assert_allclose(jnp.sum(strat.weights), 1.0, rtol=1e-10)
    assert strat.rewards.shape == strat.weights.shape


def test_quantile_level_annealing_rejects_negative_weights():
    """Issue 13: negative (or non-finite, or all-zero) weights are refused by name, never a
    schedule of garbage thresholds."""
    r = jnp.linspace(-1.0, 1.0, 50)
    for bad in (jnp.full(50, -1.0), jnp.full(50, jnp.nan), jnp.zeros(50), jnp.ones(49)):
        with pytest.raises(ValueError, match="weights"):
            quantile_level_annealing(r, 0.8, 1.0, "upper", 10, weights=bad)


def test_quantile_level_annealing_schedule(x64):
    r = jnp.sqrt(2.0) * jax.random.normal(jax.random.key(3), (2000,))
    betas, ts = quantile_level_annealing(r, 0.8, 1.0, "upper", 100, anneal_fraction=0.5, num_levels=5)
    assert betas.shape == ts.shape == (100,)
    assert np.all(np.diff(betas) >= 0) and np.all(np.diff(ts) >= -1e-9)
    np.testing.assert_allclose(betas[50:], 0.8)
    np.testing.assert_allclose(ts[-1], solve_threshold(r, 0.8, 1.0, "upper"), rtol=1e-6)
    assert betas[0] < 0.2  # the first of 5 stairs from 0.001 to 0.8
    betas_l, _ = quantile_level_annealing(r, 0.2, 1.0, "lower", 40, num_levels=4)
    assert betas_l[0] > 0.7 and np.all(np.diff(betas_l) <= 0) and betas_l[-1] == pytest.approx(0.2)


MU, COV = np.array([0.0, 0.0]), np.eye(2)
base = lambda x, t: gaussian_velocity(x, t, MU, COV)
field = lambda p, x, t: gaussian_velocity(x, t, p, COV)
reward = lambda x: x[0] + x[1]


def test_exp_ft_closed_form_tilt(optax_promotion):
    """EXP-FT at temperature alpha: N(0, I) with r = x1 + x2 goes to N((1, 1) / alpha, I)."""
    kernel = exp_ft(field, base, reward, optax.adam(0.05), 2, temperature=2.0, batch_size=64, num_steps=20)
    state = kernel.init(jnp.zeros(2))
    step = jax.jit(kernel.step)
    for i in range(120):
        state, _ = step(state, jax.random.key(i))
    np.testing.assert_allclose(state.params, [0.5, 0.5], atol=0.05)


def test_tfft_kernel_fixed_and_annealed(optax_promotion):
    fixed = tfft(field, base, reward, optax.adam(1e-2), 2, quantile_level=0.8, temperature=1.0, t_star=1.0,
                 batch_size=16, num_steps=8)
    s, info = jax.jit(fixed.step)(fixed.init(jnp.zeros(2)), jax.random.key(0))
    assert np.isfinite(info.loss)
    annealed = tfft(field, base, reward, optax.adam(1e-2), 2, quantile_level=0.8, temperature=1.0, batch_size=16,
                    num_steps=8)
    s, info = jax.jit(annealed.step)(annealed.init(jnp.zeros(2)), jax.random.key(0), (0.5, 0.0))
    assert np.isfinite(info.loss)
    x = jnp.array([2.0, 1.5])
    np.testing.assert_allclose(jax.jit(tfft_reward(reward, 1.0, 0.8, "upper"))(x), (3.5 - 1.0) / 0.2, rtol=1e-6)
    np.testing.assert_allclose(jax.jit(tfft_reward(reward, 4.0, 0.2, "lower"))(x), -(4.0 - 3.5) / 0.2, rtol=1e-6)


@pytest.mark.slow
def test_tfft_fine_tune_end_to_end_moves_the_tail(optax_promotion):
    res = tfft_fine_tune(jax.random.key(0), field, jnp.zeros(2), reward, 2, quantile_level=0.5, temperature=1.0,
                         num_steps=30, num_offline=2000, optimizer=optax.adam(0.05), grid_steps=10,
                         batch_size=64, progress=False)
    assert res.fit.history["loss"].shape == (30,)
    # The fitted mean moves along (1, 1), towards the right tail.
    assert float(res.params[0]) > 0.1 and float(res.params[1]) > 0.1


@pytest.mark.slow
def test_tfft_fine_tune_with_quantile_level_annealing(optax_promotion):
    res2 = tfft_fine_tune(jax.random.key(0), field, jnp.zeros(2), reward, 2, quantile_level=0.8, temperature=1.0,
                          num_steps=6, num_offline=500, grid_steps=6, batch_size=16, progress=False,
                          anneal_quantile_level=True)
    assert res2.fit.history["loss"].shape == (6,)


@pytest.mark.slow
def test_tfft_fine_tune_with_proposal_and_refinement(tmp_path, optax_promotion):
    """The R-TFFT recipe of benchmarks/seeds/tfft.py: an EXP-FT tail proposal, a stratified
    importance-sampled Stage 1, an annealed Stage 2 and importance-weighted refinement; a
    rerun with the same checkpoint folder resumes every phase and returns the same result."""
    kwargs = dict(quantile_level=0.8, temperature=1.0, num_steps=4, num_offline=400, grid_steps=6,
                  batch_size=16, progress=False, optimizer=optax.adam(0.05), anneal_quantile_level=True,
                  proposal_steps=5, refine_steps=3, base_velocity_fn=base, checkpoint_dir=tmp_path,
                  behaviour_mixture=0.0, num_check=0)
    res = tfft_fine_tune(jax.random.key(1), field, jnp.zeros(2), reward, 2, **kwargs)
    assert res.proposal.history["loss"].shape == (5,) and res.refinement.history["loss"].shape == (3,)
    assert float(res.t_star) == float(res.importance_threshold.t_star)
    np.testing.assert_allclose(jnp.sum(res.importance_threshold.weights), 1.0, rtol=1e-5)
    # The proposal (EXP-FT at temperature 0.2, target mean (5, 5)) moves along (1, 1) at
    # about Adam's full step size (5 steps of 0.05).
    assert float(jnp.min(res.proposal.state.params)) > 0.2
    assert np.all(res.refinement.history["ess"] <= 1.0 + 1e-6) and np.all(res.fit.history["ess"] == 1.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["proposal.ckpt", "refine.ckpt", "stage2.ckpt"]
    again = tfft_fine_tune(jax.random.key(1), field, jnp.zeros(2), reward, 2, **kwargs)
    np.testing.assert_array_equal(again.params, res.params)
    np.testing.assert_array_equal(again.refinement.history["loss"], res.refinement.history["loss"])


def test_tfft_fine_tune_bad_options():
    with pytest.raises(ValueError, match="refine_steps"):
        tfft_fine_tune(jax.random.key(0), field, jnp.zeros(2), reward, 2, quantile_level=0.5, refine_steps=-1)
    with pytest.raises(ValueError, match="stratify_level"):
        tfft_fine_tune(jax.random.key(0), field, jnp.zeros(2), reward, 2, quantile_level=0.5, stratify_level=1.0)
    with pytest.raises(ValueError, match="side"):
        tfft_fine_tune(jax.random.key(0), field, jnp.zeros(2), reward, 2, quantile_level=0.5, side="left")



_SMALL = dict(quantile_level=0.5, num_steps=1, num_offline=16, grid_steps=2, batch_size=4, proposal_steps=0,
              num_check=0, progress=False)


# each was truncated (2.5 -> 2), failed in Python with a TypeError or was refused under another name
@pytest.mark.parametrize("name", ["num_check", "proposal_steps", "refine_steps", "num_offline", "grid_steps",
                                  "sample_chunk"])
def test_tfft_fine_tune_refuses_fractional_counts(name, optax_promotion):
    with pytest.raises(ValueError, match=rf"^{name} must be an integer"):
        tfft_fine_tune(jax.random.key(0), field, jnp.zeros(2), reward, 2, **{**_SMALL, name: 16.5})


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::tailjax.flows.tfft_fine_tune.TFFTWarning")  # 16 offline samples: weak
def test_tfft_fine_tune_takes_numpy_integer_counts(optax_promotion):
    counts = dict(num_steps=1, num_offline=16, grid_steps=2, num_check=8, proposal_steps=0, refine_steps=0,
                  sample_chunk=8)
    res = tfft_fine_tune(jax.random.key(0), field, jnp.zeros(2), reward, 2,
                         **{**_SMALL, **{k: np.int64(v) for k, v in counts.items()}})
    assert res.fit.history["loss"].shape == (1,) and res.refinement is None and np.isfinite(float(res.t_star))


def test_tfft_threshold_refuses_a_fractional_num_samples():
    sample = lambda k, n: jax.random.normal(k, (n, 2))  # noqa: E731
    with pytest.raises(ValueError, match="num_samples"):  # was the sampler's shape TypeError
        tfft_threshold(jax.random.key(0), sample, reward, num_samples=100.5, quantile_level=0.5, temperature=1.0)


@pytest.mark.parametrize("kwargs,match", [
    ({"quantile_level": 1.0, "temperature": 1.0}, "quantile_level"),
    ({"quantile_level": 0.0, "temperature": 1.0}, "quantile_level"),
    ({"quantile_level": 0.5, "temperature": 0.0}, "temperature"),
    ({"quantile_level": 0.5, "temperature": -1.0}, "temperature"),
    ({"quantile_level": 0.5, "temperature": 1.0, "side": "right"}, "side"),
])
def test_bad_levels(kwargs, match):
    sample = lambda k, n: jax.random.normal(k, (n, 2))
    with pytest.raises(ValueError, match=match):
        tfft_threshold(jax.random.key(0), sample, reward, num_samples=100, **kwargs)
    with pytest.raises(ValueError, match=match):
        tfft(field, base, reward, optax.adam(1e-3), 2, t_star=0.0, **kwargs)


def test_nan_reward_and_mismatched_dimensions():
    sample = lambda k, n: jax.random.normal(k, (n, 2))
    with pytest.raises(ValueError, match="non-finite"):
        tfft_threshold(jax.random.key(0), sample, lambda x: jnp.log(x[0]), quantile_level=0.5, temperature=1.0,
                       num_samples=100)
    with pytest.raises(ValueError, match="scalar"):
        check_reward_values(lambda x: x, jnp.zeros((3, 2)))
    kernel = tfft(field, base, reward, optax.adam(1e-3), 3, quantile_level=0.5, temperature=1.0, t_star=0.0)
    with pytest.raises(ValueError, match="shape"):
        kernel.init(jnp.zeros(2))


def _table4_field():
    """Exact N(mean, I_2) fields with the mean as parameters (TFFT Table 4's prior at mean 0)."""
    return field, jnp.zeros(2)


def test_weak_stage1_warns_and_strict_raises(optax_promotion):
    """R-TFFT on Table 4: 2000 prior samples cannot resolve the target's mode near r = 10, and the
    Stage-1 diagnostics say so (warning; with strict=True an error before any fine-tuning)."""
    kwargs = dict(quantile_level=0.8, temperature=1.0, num_steps=2, num_offline=2000, grid_steps=6, batch_size=16,
                  progress=False, proposal_steps=0, num_check=200)
    with pytest.warns(TFFTWarning, match="Stage 1"):
        res = tfft_fine_tune(jax.random.key(0), field, jnp.zeros(2), reward, 2, **kwargs)
    d = res.diagnostics
    assert float(res.threshold.tail_ess) < 100 and float(res.threshold.max_weight) > 0.02
    assert d.target_tail_mass == pytest.approx(0.2) and 0.0 <= float(d.tail_mass) <= 1.0
    assert any("Stage 1" in m for m in d.warnings) and float(d.t_star_se) > 0
    with pytest.raises(TFFTDiagnosticError, match="Stage 1"):
        tfft_fine_tune(jax.random.key(0), field, jnp.zeros(2), reward, 2, strict=True, **kwargs)


def test_stage1_diagnostics_on_table4(x64):
    """The tilt weights of 10^4 prior samples: degenerate for R-TFFT (beta = 0.8), healthy for L-TFFT."""
    r = jnp.sqrt(2.0) * jax.random.normal(jax.random.key(3), (10_000,))
    t_r, t_l = solve_threshold(r, 0.8, 1.0, "upper"), solve_threshold(r, 0.2, 1.0, "lower")
    ess_r, top_r = tilt_diagnostics(r, t_r, 0.8, 1.0, "upper")
    ess_l, top_l = tilt_diagnostics(r, t_l, 0.2, 1.0, "lower")
    assert float(ess_r) < 20 and float(top_r) > 0.05
    assert float(ess_l) > 500 and float(top_l) < 1e-3


@pytest.mark.slow
def test_default_r_tfft_runs_the_safe_recipe(optax_promotion):
    """With the defaults a weak Stage 1 triggers the tail proposal, the stratified importance
    Stage 1 and an off-policy importance-weighted Stage 2 (paths from the base and the proposal)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TFFTWarning)
        res = tfft_fine_tune(jax.random.key(1), field, jnp.zeros(2), reward, 2, quantile_level=0.8, num_steps=3,
                             num_offline=1000, grid_steps=6, batch_size=32, progress=False, num_check=500,
                             optimizer=optax.adam(0.05))
    assert res.proposal is not None and res.importance_threshold is not None and res.refinement is None
    assert float(res.t_star) == float(res.importance_threshold.t_star)
    np.testing.assert_allclose(jnp.sum(res.importance_threshold.weights), 1.0, rtol=1e-5)
    ess = res.fit.history["ess"]
    assert np.all((ess > 0) & (ess <= 1.0 + 1e-6)) and np.any(ess < 1.0)
    assert res.diagnostics.tail_mass.shape == () and float(res.diagnostics.tail_mass_se) > 0


@pytest.mark.slow
def test_per_context_stage1_has_one_threshold_per_context(optax_promotion):
    """Class c is N((m_c, m_c), I): its reward x1 + x2 is N(2 m_c, 2), so its L-TFFT threshold is
    2 m_c + 1.4572 (t* moves with a shift of the reward law)."""
    means = jnp.array([-1.0, 0.0, 2.0])
    cfield = lambda p, x, t, c: gaussian_velocity(x, t, p[c], COV)
    params = jnp.stack([means, means], axis=1)
    res = tfft_fine_tune(jax.random.key(2), cfield, params, lambda x, c: x[0] + x[1], 2, quantile_level=0.2,
                         side="lower", num_steps=2, num_offline=3000, grid_steps=6, batch_size=12, progress=False,
                         contexts=jnp.arange(3), stage1="per_context", num_check=300)
    assert res.t_star.shape == (3,) and len(res.threshold) == 3 and res.proposal is None
    np.testing.assert_allclose(res.t_star, 2.0 * means + 1.4572, atol=0.3)
    assert res.diagnostics.tail_mass.shape == (3,) and res.diagnostics.tail_ess.shape == (3,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TFFTWarning)
        pooled = tfft_fine_tune(jax.random.key(2), cfield, params, lambda x, c: x[0] + x[1], 2, quantile_level=0.2,
                                side="lower", num_steps=1, num_offline=3000, grid_steps=6, batch_size=12,
                                progress=False, contexts=jnp.arange(3), num_check=0, proposal_steps=0)
    # One threshold for the pooled law (a three-component mixture: F_L's global maximum may
    # sit at another mode than any class's own threshold).
    assert pooled.t_star.shape == () and pooled.threshold.rewards.shape == (3000,)
    with pytest.raises(ValueError, match="per_context"):
        tfft_fine_tune(jax.random.key(2), cfield, params, lambda x, c: x[0] + x[1], 2, quantile_level=0.2,
                       stage1="per_context", contexts=lambda k, n: jnp.zeros(n, jnp.int32))

"""Bad input to the DRO family's public functions: a clear ``ValueError`` naming the argument
for concrete input, NaN (documented) for traced levels out of range, never a silent finite
wrong number (issue 13)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tailjax import dro
from tailjax.dro.corruptions import perlin_field
from tailjax.dro import (
    dual_update,
    erm_loss,
    fit_gas_dro,
    gmm_log_density,
    gmm_mle,
    kl_dro_loss,
    kl_dual,
    kl_tilted_divergence,
    kl_worst_case,
    penalty_ascent,
    ppo_surrogate,
    reweighted_loss,
    standardize,
)
from tailjax.nn.ddpm import make_schedule

LOSSES = jnp.array([0.1, 0.5, 2.0, 0.3])


def test_kl_dual_with_a_traced_bad_level_is_nan_not_a_number():
    f = jax.jit(kl_dual)
    assert np.isnan(float(f(LOSSES, -1.0, 0.1)))  # lam < 0 used to give a finite value
    assert np.isnan(float(f(LOSSES, 1.0, -0.1)))  # radius < 0 too
    assert np.isfinite(float(f(LOSSES, 1.0, 0.1)))
    with pytest.raises(ValueError, match="lam"):
        kl_dual(LOSSES, 0.0, 0.1)
    with pytest.raises(ValueError, match="radius"):
        kl_dual(LOSSES, 1.0, -0.1)


def test_kl_probs_must_match_losses_and_be_a_distribution():
    with pytest.raises(ValueError, match="probs"):
        kl_dual(LOSSES, 1.0, 0.1, probs=jnp.ones(3))
    with pytest.raises(ValueError, match="probs"):
        kl_dual(LOSSES, 1.0, 0.1, probs=jnp.array([0.5, -0.1, 0.3, 0.3]))
    with pytest.raises(ValueError, match="probs"):
        kl_worst_case(LOSSES, 0.1, probs=jnp.array([0.5, jnp.nan, 0.3, 0.3]))
    with pytest.raises(ValueError, match="probs"):
        kl_tilted_divergence(LOSSES, 1.0, probs=jnp.zeros(4))


def test_kl_worst_case_traced_radius_out_of_range_is_nan():
    value, lam = jax.jit(kl_worst_case)(LOSSES, -0.5)
    assert np.isnan(float(value)) and np.isnan(float(lam))
    with pytest.raises(ValueError, match="radius"):
        kl_worst_case(LOSSES, 0.0)
    with pytest.raises(ValueError, match="iters"):
        kl_worst_case(LOSSES, 0.1, iters=0)
    with pytest.raises(ValueError, match="lam"):
        kl_tilted_divergence(LOSSES, -1.0)
    assert np.isnan(float(jax.jit(kl_tilted_divergence)(LOSSES, -1.0)))


def test_kl_dro_loss_with_a_traced_negative_radius_is_nan():
    loss = lambda w, x: (w - x) ** 2  # noqa: E731
    params = dro.kl_dro_params(jnp.float32(0.0))
    v = jax.jit(lambda r: kl_dro_loss(params, LOSSES, None, loss_fn=loss, radius=r)[0])(-0.1)
    assert np.isnan(float(v))
    with pytest.raises(ValueError, match="radius"):
        kl_dro_loss(params, LOSSES, None, loss_fn=loss, radius=-0.1)


def test_empty_or_ragged_batches_are_refused_not_averaged_to_nan():
    loss = lambda w, s: (w * s[0] - s[1]) ** 2  # noqa: E731
    with pytest.raises(ValueError, match="empty"):
        erm_loss(1.0, (jnp.zeros(0), jnp.zeros(0)), None, loss_fn=loss)
    with pytest.raises(ValueError, match="leading axis"):
        erm_loss(1.0, (jnp.zeros(3), jnp.zeros(4)), None, loss_fn=loss)
    with pytest.raises(ValueError, match="weights"):
        reweighted_loss(1.0, ((jnp.zeros(3), jnp.zeros(3)), jnp.ones(1)), None, loss_fn=loss)
    with pytest.raises(ValueError, match="values"):
        standardize(jnp.zeros(0))


def test_dual_update_refuses_a_negative_step_or_budget():
    with pytest.raises(ValueError, match="lr"):
        dual_update(jnp.float32(0.0), jnp.float32(1.0), 0.1, -1.0)
    with pytest.raises(ValueError, match="budget"):
        dual_update(jnp.float32(0.0), jnp.float32(1.0), -0.1, 1.0)
    assert np.isnan(float(jax.jit(dual_update)(jnp.float32(0.0), jnp.float32(1.0), 0.1, -1.0)))


def test_ppo_surrogate_shapes_and_traced_clip():
    with pytest.raises(ValueError, match="shape"):
        ppo_surrogate(jnp.zeros(4), jnp.zeros(3), jnp.zeros(4), 0.2)
    assert np.isnan(float(jax.jit(ppo_surrogate)(jnp.zeros(4), jnp.zeros(4), jnp.ones(4), 1.5)))
    assert np.isfinite(float(jax.jit(ppo_surrogate)(jnp.zeros(4), jnp.zeros(4), jnp.ones(4), 0.2)))


def test_penalty_ascent_checks_its_own_arguments():
    with pytest.raises(ValueError, match="penalty"):
        penalty_ascent(jnp.sum, jnp.zeros(2), 0.0, 5, 0.1)
    with pytest.raises(ValueError, match="steps"):
        penalty_ascent(jnp.sum, jnp.zeros(2), 1.0, 0, 0.1)
    with pytest.raises(ValueError, match="step_size"):
        penalty_ascent(jnp.sum, jnp.zeros(2), 1.0, 5, -0.1)


def test_gmm_refuses_nan_data_and_wrong_shapes():
    x = np.random.default_rng(0).normal(size=(20, 2)).astype(np.float32)
    with pytest.raises(ValueError, match="NaN"):
        gmm_mle(jax.random.key(0), np.where(np.arange(40).reshape(20, 2) == 3, np.nan, x))
    with pytest.raises(ValueError, match="shape"):
        gmm_mle(jax.random.key(0), x[:, 0])
    with pytest.raises(ValueError, match="min_std"):
        gmm_mle(jax.random.key(0), x, min_std=0.0)
    psi = gmm_mle(jax.random.key(0), x, components=2, iters=3)
    with pytest.raises(ValueError, match="shape"):
        gmm_log_density(psi, jnp.zeros(3))


def test_fit_gas_dro_refuses_nan_data_and_bad_batch_sizes():
    cfg = dro.GasDroConfig(inner_steps=1, epochs=1, num_samples=4, outer_samples=4)
    data = np.zeros((8, 3), np.float32)
    bad = data.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="data"):
        fit_gas_dro(jax.random.key(0), None, None, bad, num_steps=1, config=cfg)
    with pytest.raises(ValueError, match="batch_size"):
        fit_gas_dro(jax.random.key(0), None, None, data, num_steps=1, config=cfg, batch_size=0)
    with pytest.raises(ValueError, match="nominal_batch_size"):
        fit_gas_dro(jax.random.key(0), None, None, data, num_steps=1, config=cfg, nominal_batch_size=0)
    with pytest.raises(ValueError, match="reference"):
        dro.gas_dro_kernel(None, None, optax.sgd(0.1), optax.sgd(0.1), cfg._replace(reference="theta_k"))


def test_carbon_helpers_refuse_nan_series_and_bad_arguments():
    with pytest.raises(ValueError, match="NaN"):
        dro.sliding_windows(np.array([1.0, np.nan, 2.0, 3.0]), 2)
    with pytest.raises(ValueError, match="one-dimensional"):
        dro.sliding_windows(np.zeros((4, 2)), 2)
    with pytest.raises(ValueError, match="finite"):
        dro.wasserstein_1d(np.array([1.0, np.nan]), np.array([1.0]))
    with pytest.raises(ValueError, match="non-empty"):
        dro.wasserstein_1d(np.array([]), np.array([1.0]))


def test_corruptions_refuse_negative_levels_and_wrong_shapes():
    with pytest.raises(ValueError, match="level"):
        dro.corrupt(jax.random.key(0), jnp.zeros((2, 4, 4)), "gaussian", -0.1)
    with pytest.raises(ValueError, match="images"):
        dro.corrupt(jax.random.key(0), jnp.zeros((4, 4)), "gaussian", 0.1)
    with pytest.raises(ValueError, match="level"):
        dro.corrupt_series(jax.random.key(0), jnp.zeros((2, 5)), "perlin", -1.0)
    with pytest.raises(ValueError, match="windows"):
        dro.corrupt_series(jax.random.key(0), jnp.zeros(5), "gaussian", 0.1)
    with pytest.raises(ValueError, match="kind"):
        dro.corrupt_series(jax.random.key(0), jnp.zeros((2, 5)), "blur", 0.1)


def test_integer_images_are_refused_not_left_uncorrupted():
    key = jax.random.key(0)
    images = jnp.ones((2, 4, 4), jnp.int32)
    # the Perlin field was cast to the image's integer dtype: truncated to 0, no noise at all
    with pytest.raises(ValueError, match="image"):
        dro.perlin_noise(key, images[0], 0.5)
    with pytest.raises(ValueError, match="images"):
        dro.corrupt(key, images, "perlin", 0.5)
    with pytest.raises(ValueError, match="image"):  # was jax.random.normal's dtype error
        dro.gaussian_noise(key, images[0], 0.1)
    with pytest.raises(ValueError, match="windows"):
        dro.corrupt_series(key, jnp.ones((2, 5), jnp.int32), "perlin", 0.5)
    assert dro.corrupt(key, images, "cutout", 2).shape == images.shape  # cutout only zeroes


def test_infinite_corruption_levels_are_refused():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="level"):  # was an OverflowError from int(inf)
        dro.corrupt(key, jnp.ones((2, 4, 4)), "cutout", float("inf"))
    with pytest.raises(ValueError, match="level"):  # inf noise clipped to a 0/1 image
        dro.corrupt(key, jnp.full((2, 4, 4), 0.5), "gaussian", float("inf"))
    with pytest.raises(ValueError, match="level"):
        dro.corrupt_series(key, jnp.ones((2, 5)), "perlin", float("inf"))


def test_integer_data_is_ascended_and_fitted_in_floats():
    # integer inputs raised jax.grad's / lax.scan's dtype errors instead of a value
    loss = lambda w, x: jnp.sum((x - w) ** 2)  # noqa: E731
    ints, floats = jnp.ones((8, 2), jnp.int32), jnp.ones((8, 2), jnp.float32)
    kw = dict(loss_fn=loss, penalty=1.0, steps=3, step_size=0.05)
    assert float(dro.wasserstein_loss(jnp.zeros(2), ints, None, **kw)[0]) == pytest.approx(
        float(dro.wasserstein_loss(jnp.zeros(2), floats, None, **kw)[0]))
    assert float(dro.dragen_loss(jnp.zeros(2), ints, None, encode=lambda s: s, decode=lambda z, s: z, **kw)[0]) \
        == pytest.approx(float(dro.wasserstein_loss(jnp.zeros(2), floats, None, **kw)[0]))
    x = np.arange(16).reshape(8, 2)
    psi_int = gmm_mle(jax.random.key(0), x, components=2, iters=3)
    psi_float = gmm_mle(jax.random.key(0), x.astype(np.float32), components=2, iters=3)
    for name in psi_float:
        np.testing.assert_allclose(psi_int[name], psi_float[name], rtol=1e-6)


def test_kl_worst_case_refuses_infinite_losses_and_ppo_an_empty_batch():
    with pytest.raises(ValueError, match="losses"):  # was (NaN, inf)
        kl_worst_case(LOSSES.at[0].set(jnp.inf), 0.1)
    with pytest.raises(ValueError, match="advantages"):  # was the NaN mean of nothing
        ppo_surrogate(jnp.zeros(0), jnp.zeros(0), jnp.zeros(0), 0.2)


def test_kl_worst_case_refuses_a_fractional_iters_and_takes_a_numpy_int():
    with pytest.raises(ValueError, match="iters"):  # was fori_loop's int32/float32 TypeError
        kl_worst_case(LOSSES, 0.1, iters=1.5)
    for a, b in zip(kl_worst_case(LOSSES, 0.1, iters=np.int64(50)), kl_worst_case(LOSSES, 0.1, iters=50)):
        assert float(a) == float(b)


def test_gmm_mle_refuses_fractional_components_and_iters():
    x = np.random.default_rng(0).normal(size=(20, 2)).astype(np.float32)
    with pytest.raises(ValueError, match="components"):  # was random.choice's TypeError
        gmm_mle(jax.random.key(0), x, components=2.5, iters=3)
    with pytest.raises(ValueError, match="iters"):  # was a scan of length 2 (truncated)
        gmm_mle(jax.random.key(0), x, components=2, iters=2.5)
    psi = gmm_mle(jax.random.key(0), x, components=np.int32(2), iters=np.int64(3))
    ref = gmm_mle(jax.random.key(0), x, components=2, iters=3)
    for name in ref:
        np.testing.assert_array_equal(psi[name], ref[name])


def test_perlin_cutout_and_window_sizes_must_be_integers():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="length"):  # was a field of 3 points
        dro.perlin_field_1d(key, 2.5)
    with pytest.raises(ValueError, match="res"):
        dro.perlin_field_1d(key, 5, res=2.5)
    with pytest.raises(ValueError, match="res"):
        perlin_field(key, (4, 4), res=2.5)
    with pytest.raises(ValueError, match="size"):  # was a 3-pixel square for 2.5
        dro.cutout(key, jnp.ones((6, 6)), 2.5)
    with pytest.raises(ValueError, match="window"):  # was numpy's IndexError
        dro.sliding_windows(np.arange(10.0), 2.5)
    with pytest.raises(ValueError, match="stride"):
        dro.sliding_windows(np.arange(10.0), 2, stride=1.5)
    with pytest.raises(ValueError, match="test_stride"):
        dro.carbon_task(test_stride=2.5)
    np.testing.assert_array_equal(dro.sliding_windows(np.arange(10.0), np.int64(2)),
                                  dro.sliding_windows(np.arange(10.0), 2))
    np.testing.assert_array_equal(dro.perlin_field_1d(key, np.int64(5)), dro.perlin_field_1d(key, 5))


def test_dro_trainers_refuse_fractional_counts_not_truncate_them():
    loss = lambda w, x: jnp.sum((x - w) ** 2)  # noqa: E731
    with pytest.raises(ValueError, match="steps"):  # was 2 ascent steps
        penalty_ascent(jnp.sum, jnp.zeros(2), 1.0, 2.5, 0.1)
    with pytest.raises(ValueError, match="steps"):
        dro.wasserstein_loss(jnp.zeros(2), jnp.ones((4, 2)), None, loss_fn=loss, steps=2.5)
    with pytest.raises(ValueError, match="num_samples"):
        dro.inner_max_kernel(None, loss, optax.sgd(0.1), num_samples=4.5)
    with pytest.raises(ValueError, match="epochs"):
        dro.inner_max_kernel(None, loss, optax.sgd(0.1), epochs=1.5)
    with pytest.raises(ValueError, match="num_generated"):
        dro.dml_dataset(jax.random.key(0), None, None, jnp.ones((4, 2)), 2.5)
    with pytest.raises(ValueError, match="chunk"):
        dro.dml_dataset(jax.random.key(0), None, None, jnp.ones((4, 2)), 3, chunk=1.5)
    with pytest.raises(ValueError, match="config.inner_steps"):
        dro.gas_dro_kernel(None, loss, optax.sgd(0.1), optax.sgd(0.1), dro.GasDroConfig(inner_steps=2.5))
    cfg = dro.GasDroConfig(inner_steps=1, epochs=1, num_samples=4, outer_samples=4)
    with pytest.raises(ValueError, match="batch_size"):
        fit_gas_dro(jax.random.key(0), None, None, np.zeros((8, 3), np.float32), num_steps=1, config=cfg,
                    batch_size=2.5)
    np.testing.assert_array_equal(penalty_ascent(jnp.sum, jnp.zeros(2), 1.0, np.int64(3), 0.1),
                                  penalty_ascent(jnp.sum, jnp.zeros(2), 1.0, 3, 0.1))


def test_a_non_scalar_nominal_weight_is_refused_by_name():
    loss = lambda w, x: jnp.sum((x - w) ** 2)  # noqa: E731
    batch = dro.OuterBatch(jnp.ones((4, 2)), jnp.zeros((4, 2)))
    weight = jnp.array([0.1, 0.2])
    with pytest.raises(ValueError, match="nominal_weight"):  # was "only 0-dimensional arrays ..."
        dro.gas_dro_outer_loss(jnp.zeros(2), batch, None, loss_fn=loss, nominal_weight=weight)
    with pytest.raises(ValueError, match="nominal_weight"):  # traced: was a (2,) "loss"
        jax.jit(lambda w: dro.gas_dro_outer_loss(jnp.zeros(2), batch, None, loss_fn=loss, nominal_weight=w))(weight)
    with pytest.raises(ValueError, match="config.nominal_weight"):
        dro.gas_dro_kernel(None, loss, optax.sgd(0.1), optax.sgd(0.1), dro.GasDroConfig(nominal_weight=weight))
    one = dro.gas_dro_outer_loss(jnp.zeros(2), batch, None, loss_fn=loss, nominal_weight=np.array([0.25]))[0]
    ref = dro.gas_dro_outer_loss(jnp.zeros(2), batch, None, loss_fn=loss, nominal_weight=0.25)[0]
    assert float(one) == float(ref)


def test_a_non_scalar_corruption_level_is_refused_by_name():
    key = jax.random.key(0)
    images, windows = jnp.full((2, 4, 4), 0.5), jnp.full((2, 5), 0.5)
    for level in (np.array([0.1, 0.2]), jnp.full((2, 1), 0.1)):
        with pytest.raises(ValueError, match="level"):  # was "only 0-dimensional arrays ..."
            dro.corrupt(key, images, "gaussian", level)
        with pytest.raises(ValueError, match="level"):
            dro.corrupt_series(key, windows, "perlin", level)
        with pytest.raises(ValueError, match="level"):  # traced: a broadcast error or a wrong result
            jax.jit(lambda lv: dro.corrupt_series(key, windows, "gaussian", lv))(level)
    with pytest.raises(ValueError, match="std"):
        dro.gaussian_noise(key, images[0], jnp.full((4, 4), 0.1))
    with pytest.raises(ValueError, match="strength"):
        jax.jit(lambda s: dro.perlin_noise(key, images[0], s))(jnp.full((4,), 0.1))
    np.testing.assert_array_equal(dro.corrupt_series(key, windows, "perlin", np.array([0.3])),
                                  dro.corrupt_series(key, windows, "perlin", 0.3))


def test_ddpm_ambiguity_set_refuses_a_fractional_last_steps_and_takes_a_numpy_int():
    noise = lambda p, x, t, c: jnp.zeros_like(x)  # noqa: E731
    schedule = make_schedule(10)
    with pytest.raises(ValueError, match="^last_steps must be an integer"):  # was J over t <= 2
        dro.ddpm_ambiguity_set(noise, schedule, (2,), last_steps=2.5)
    data, key = jnp.ones((4, 2)), jax.random.key(0)
    got = dro.ddpm_ambiguity_set(noise, schedule, (2,), last_steps=np.int64(3)).reconstruction_loss(None, data, key)
    ref = dro.ddpm_ambiguity_set(noise, schedule, (2,), last_steps=3).reconstruction_loss(None, data, key)
    assert float(got) == float(ref)

"""Regression tests: no silent wrong numbers from the tail-risk core (edge inputs)."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tailjax import risk


@pytest.fixture(scope="module")
def normal():
    return jax.random.normal(jax.random.PRNGKey(0), (100_000,))


def test_gradient_in_tail_prob_at_an_integer_count_is_a_subgradient(normal):
    g = float(jax.grad(lambda p: risk.cvar(normal, p))(0.01))  # n * p = 1000 exactly
    h = 1e-4
    with jax.enable_x64(True):
        x = jnp.asarray(np.asarray(normal), jnp.float64)
        right = float((risk.cvar(x, 0.01 + h) - risk.cvar(x, 0.01)) / h)
        left = float((risk.cvar(x, 0.01) - risk.cvar(x, 0.01 - h)) / h)
    assert min(left, right) - 0.05 <= g <= max(left, right) + 0.05
    assert g < -30  # not 0


def test_gradient_in_tail_prob_between_integers_matches_finite_differences(normal):
    g = float(jax.grad(lambda p: risk.cvar(normal, p))(0.012345))
    fd = float((risk.cvar(normal, 0.012345 + 1e-6) - risk.cvar(normal, 0.012345 - 1e-6)) / 2e-6)
    assert g == pytest.approx(fd, rel=2e-2)


def test_minus_inf_outside_the_tail_leaves_cvar_finite(normal):
    low = normal.at[int(jnp.argmin(normal))].set(-jnp.inf)
    assert float(risk.cvar(low, 0.01)) == pytest.approx(float(risk.cvar(normal, 0.01)), rel=1e-6)
    assert float(risk.cvar_large(low, 0.01)) == pytest.approx(float(risk.cvar(normal, 0.01)), rel=1e-6)
    assert float(risk.solve_threshold(low, 0.8, 1.0)) == pytest.approx(
        float(risk.solve_threshold(normal, 0.8, 1.0)), rel=1e-5)
    grad = jax.grad(lambda x: risk.cvar(x, 0.01))(low)
    assert bool(jnp.all(jnp.isfinite(grad)))


def test_inf_inside_the_tail_gives_inf():
    x = jnp.array([1.0, 2.0, jnp.inf, 0.5])
    assert float(risk.cvar(x, 0.5)) == np.inf
    assert float(risk.cvar(-x, 0.5, side="lower")) == -np.inf


@pytest.mark.parametrize("tail_prob", [1e-9, 1e-12, 1e-30])
def test_tail_below_one_sample_is_the_maximum(normal, tail_prob):
    top = float(jnp.max(normal))
    assert float(risk.cvar(normal, tail_prob)) == top
    assert float(jax.jit(risk.cvar)(normal, tail_prob)) == top
    assert float(risk.cvar_large(normal, tail_prob)) == top
    assert float(risk.var(normal, tail_prob)) == top


def test_weights_near_the_float32_maximum_do_not_overflow():
    x = jnp.arange(5.0)
    w = jnp.full(5, 3e38, jnp.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the input checks must not overflow either
        assert float(risk.cvar(x, 0.4, weights=w)) == pytest.approx(3.5)
    assert float(risk.var(x, 0.4, weights=w)) == float(risk.var(x, 0.4)) == 2.0


@pytest.mark.parametrize("bad", [0.0, 1.5, -0.1, float("nan")])
def test_traced_tail_prob_outside_the_unit_interval_gives_nan(normal, bad):
    assert np.isnan(float(jax.jit(risk.cvar)(normal, bad)))
    assert np.isnan(float(jax.jit(risk.var)(normal, bad)))


def test_traced_levels_of_solve_threshold_outside_their_range_give_nan():
    r = jax.random.normal(jax.random.PRNGKey(1), (2000,))
    solve = jax.jit(lambda q, a: risk.solve_threshold(r, q, a))
    assert np.isnan(float(solve(1.0, 1.0)))
    assert np.isnan(float(solve(0.8, 0.0)))
    assert np.isnan(float(solve(0.8, -1.0)))
    assert np.isfinite(float(solve(0.8, 1.0)))
    assert np.isnan(float(risk.solve_threshold(r.at[3].set(jnp.inf), 0.8, 1.0)))
    assert np.isnan(float(risk.solve_threshold(r.at[3].set(jnp.nan), 0.2, 1.0, "lower")))


def test_nan_samples_give_nan_in_var_and_cvar(normal):
    x = normal.at[11].set(jnp.nan)
    for side in ("upper", "lower"):
        v, c = risk.var_cvar(x, 0.01, side=side)
        assert np.isnan(float(v)) and np.isnan(float(c))


def test_non_finite_or_zero_weights_rejected_or_nan():
    x = jnp.ones((2, 3))
    with pytest.raises(ValueError, match="weights must have the samples' last axis"):
        risk.cvar(x[0], 0.5, weights=jnp.float32(2.0))
    with pytest.raises(ValueError, match="weights must be finite"):
        risk.cvar(x[0], 0.5, weights=jnp.array([1.0, jnp.nan, 1.0]))
    with pytest.raises(ValueError, match="weights must be finite"):
        risk.cvar(x[0], 0.5, weights=jnp.array([1.0, jnp.inf, 1.0]))
    with pytest.raises(ValueError, match=r"weights sum to zero \(row\(s\) \[1\]"):
        risk.cvar(x, 0.5, weights=jnp.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]))
    traced = jax.jit(lambda w: risk.cvar(jnp.arange(6.0).reshape(2, 3), 0.5, weights=w))
    out = traced(jnp.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]))
    assert np.isfinite(float(out[0])) and np.isnan(float(out[1]))
    assert np.isnan(float(traced(jnp.array([[1.0, jnp.nan, 1.0], [1.0, 1.0, 1.0]]))[0]))

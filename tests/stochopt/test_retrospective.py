"""Retrospective approximation (Algorithm 1) with self-structuring IS."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tailjax.importance import plain_scheme, self_structuring_scheme
from tailjax.stochopt import (
    CappedSimplex,
    Simplex,
    build_retrospective_approximation,
    level_method,
    retrospective_approximation,
    run_stochastic_approximation,
    saa_value,
    sample_sizes,
    stochastic_approximation,
)
from tailjax.stochopt.problems import portfolio_problem

from .conftest import RA_SA_BETA as BETA


@pytest.mark.slow
def test_ra_reaches_large_sample_optimum(large_sample_reference, x64):
    p, x_large, ref, _ = large_sample_reference
    grid = jnp.geomspace(0.5, 8.0, 8)
    scheme = self_structuring_scheme(p.dist, p.loss, BETA, h_grid=grid, pilot_size=512)
    res = retrospective_approximation(
        jax.random.PRNGKey(0), p.loss, scheme, p.theta_set, BETA,
        n0=1024, growth=2.0, num_stages=3, tolerance_scale=2.0, u0=5.0, padding="max",
    )
    sizes = [s.n for s in res.stages]
    assert sizes == sample_sizes(1024, 2.0, 3) == [1024, 2048, 4096]
    for stage in res.stages:
        assert stage.tolerance == pytest.approx(2.0 / math.sqrt(stage.n))
        assert bool(stage.converged) and float(stage.gap) <= stage.tolerance + 1e-12
        assert float(grid[0]) <= float(stage.is_param) <= float(grid[-1])
    value, _ = saa_value(res.theta, p.loss, x_large, BETA)
    assert float(value) <= ref * (1 + 5e-3)  # within 0.5% of the large-sample optimum
    assert float(jnp.dot(p.mean, res.theta)) >= float(p.theta_set.target) - 1e-9


@pytest.mark.slow  # fast suite: test_ra_as_written_keeps_earlier_samples_with_their_own_ratios
def test_ra_plain_small_reaches_stage_tolerances(large_sample_reference, x64):
    """Fast version: small IS stages, one compiled program for all stages."""
    p, x_large, ref, _ = large_sample_reference
    scheme = self_structuring_scheme(p.dist, p.loss, BETA, h_grid=jnp.geomspace(0.5, 8.0, 4), pilot_size=256)
    res = retrospective_approximation(
        jax.random.PRNGKey(3), p.loss, scheme, p.theta_set, BETA,
        n0=1200, growth=1.5, num_stages=2, tolerance_scale=1.0, padding="max", max_iter=60,
    )
    assert [s.n for s in res.stages] == [1200, 1800]
    for stage in res.stages:
        assert bool(stage.converged) and float(stage.gap) <= 1.0 / math.sqrt(stage.n) + 1e-12
    # warm starts: each stage starts from the previous decision, the last is near-optimal
    value, _ = saa_value(res.theta, p.loss, x_large, BETA)
    assert float(value) <= ref * 1.03


def test_ra_sample_sizes_and_bad_input(large_sample_reference):
    p, *_ = large_sample_reference
    assert sample_sizes(100, 1.5, 4) == [100, 150, 225, 338]
    scheme = plain_scheme(p.dist)
    with pytest.raises(ValueError, match="growth"):
        retrospective_approximation(jax.random.PRNGKey(0), p.loss, scheme, p.theta_set, BETA, growth=1.0)
    with pytest.raises(ValueError, match="tail_prob"):
        retrospective_approximation(jax.random.PRNGKey(0), p.loss, scheme, p.theta_set, 0.0)
    with pytest.raises(ValueError, match="tolerance_scale"):
        retrospective_approximation(jax.random.PRNGKey(0), p.loss, scheme, p.theta_set, BETA, tolerance_scale=0.0)


def test_ra_as_written_keeps_earlier_samples_with_their_own_ratios(large_sample_reference, x64):
    """Algorithm 1 as the tutorial writes it: stage k adds n_k - n_{k-1} draws of its own IS
    law to the earlier ones (each keeping its likelihood ratio), the first stage samples
    from the given alpha_0 without an oracle call."""
    from tailjax.importance import ISScheme

    p, x_large, ref, _ = large_sample_reference
    def choose(key, u, theta):  # a fixed mean shift of the t law
        return jnp.full((3,), 0.5)

    def sample(key, shift, n):  # X = shift + t-noise: log f(z) - log g(z)
        z = shift + p.dist.sample(key, n)
        return z, jax.vmap(lambda zz: p.dist.log_prob(zz) - p.dist.log_prob(zz - shift))(z)

    scheme = ISScheme(choose, sample)
    alpha0 = jnp.full((3,), 0.25)
    res = retrospective_approximation(
        jax.random.PRNGKey(4), p.loss, scheme, p.theta_set, BETA, n0=1000, growth=2.0,
        num_stages=3, tolerance_scale=1.0, padding="max", max_iter=80, reuse_samples=True,
        initial_is_param=alpha0,
    )
    assert [s.n for s in res.stages] == [1000, 2000, 4000]
    assert [s.new_samples for s in res.stages] == [1000, 1000, 2000]
    assert res.total_samples == 4000  # the fresh-sample variant draws 7000
    assert jnp.array_equal(res.stages[0].is_param, alpha0) and float(res.stages[1].is_param[0]) == 0.5
    # the last stage problem is the IS objective over all 4000 draws, each with its own ratio
    draws = [sample(jax.random.split(jax.random.fold_in(jax.random.PRNGKey(4), k))[1], a, m)
             for k, (a, m) in enumerate([(alpha0, 1000), (jnp.full((3,), 0.5), 1000), (jnp.full((3,), 0.5), 2000)])]
    z = jnp.concatenate([d[0] for d in draws])
    log_lr = jnp.concatenate([d[1] for d in draws])
    value, _ = saa_value(res.theta, p.loss, z, BETA, log_lr=log_lr)
    assert float(value) == pytest.approx(float(res.value), rel=1e-9)
    assert all(bool(s.converged) for s in res.stages)
    value_large, _ = saa_value(res.theta, p.loss, x_large, BETA)
    assert float(value_large) <= ref * 1.05


def _portfolio():
    return portfolio_problem(3)


def _ra(**kwargs):
    p = _portfolio()
    return build_retrospective_approximation(p.loss, plain_scheme(p.dist), p.theta_set, BETA, **kwargs)


def _sa(**kwargs):
    p = _portfolio()
    return stochastic_approximation(p.loss, plain_scheme(p.dist), p.theta_set, BETA, **kwargs)


def _quadratic(theta):
    return jnp.sum(theta**2), None


# each was truncated (2.5 -> 2) or failed inside JAX or NumPy with a TypeError
@pytest.mark.parametrize("name,call", [
    pytest.param("n0", lambda: sample_sizes(2.5, 2.0, 3), id="sample_sizes-n0"),
    pytest.param("num_stages", lambda: sample_sizes(8, 2.0, 2.5), id="sample_sizes-num_stages"),
    pytest.param("n0", lambda: _ra(n0=8.5), id="retrospective-n0"),
    pytest.param("max_iter", lambda: _ra(n0=8, max_iter=2.5), id="retrospective-max_iter"),
    pytest.param("max_iter", lambda: level_method(_quadratic, Simplex(3), jnp.ones(3) / 3, max_iter=2.5),
                 id="level_method-max_iter"),
    pytest.param("batch_size", lambda: _sa(batch_size=2.5), id="stochastic_approximation-batch_size"),
    pytest.param("update_every", lambda: _sa(update_every=2.5), id="stochastic_approximation-update_every"),
    pytest.param("average_start", lambda: _sa(average_start=2.5), id="stochastic_approximation-average_start"),
    pytest.param("num_steps", lambda: run_stochastic_approximation(
        lambda s, k, b: (s + 1.0, s), jnp.zeros(()), jax.random.PRNGKey(0), 2.5), id="run_sa-num_steps"),
    pytest.param("dim", lambda: Simplex(2.5), id="Simplex"),
    pytest.param("dim", lambda: CappedSimplex(2.5), id="CappedSimplex"),
    pytest.param("dim", lambda: portfolio_problem(3.5), id="portfolio_problem"),
])
def test_fractional_counts_are_refused_not_truncated(name, call):
    with pytest.raises(ValueError, match=rf"^{name} must be an integer"):
        call()


def test_numpy_integer_counts_still_work():
    assert sample_sizes(np.int64(100), 1.5, np.int64(4)) == [100, 150, 225, 338]
    simplex = Simplex(np.int64(3))
    assert simplex == Simplex(3) and type(simplex.dim) is int
    np.testing.assert_array_equal(simplex.feasible_point(), Simplex(3).feasible_point())
    p = portfolio_problem(np.int64(3))
    np.testing.assert_array_equal(p.mean, portfolio_problem(3).mean)

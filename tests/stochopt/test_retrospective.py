"""Retrospective approximation (Algorithm 1) with self-structuring IS."""

import math

import jax
import jax.numpy as jnp
import pytest

from tailjax.importance import plain_scheme, self_structuring_scheme
from tailjax.stochopt import retrospective_approximation, saa_value, sample_sizes

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

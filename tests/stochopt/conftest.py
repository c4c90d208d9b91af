"""Shared fixtures of the stochopt tests."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tailjax.stochopt.problems import portfolio_problem

from ._highs import cvar_lp

RA_SA_BETA = 0.01


@pytest.fixture(scope="session")
def large_sample_reference():
    """HiGHS optimum of the CVaR SAA problem on a large sample (the target of RA and SA):
    a heavy-tailed (t, nu = 3) portfolio of 3 assets at beta = 0.01."""
    with jax.enable_x64(True):
        p = portfolio_problem(3, "t", dtype=jnp.float64)
        x = p.dist.sample(jax.random.PRNGKey(99), 20_000)
    slopes = -(np.asarray(p.mean) + np.asarray(x) @ np.asarray(p.chol).T)
    value, theta = cvar_lp(slopes, np.zeros(len(slopes)), p.theta_set, RA_SA_BETA)
    return p, x, value, theta

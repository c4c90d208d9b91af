"""IS oracle (Algorithm 2) and schemes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tailjax.importance import (
    default_h_grid,
    dominating_point,
    gaussian,
    gaussian_dominating_points,
    gaussian_tilting_scheme,
    iid_pareto,
    iid_student_t,
    iid_weibull,
    is_var_cvar,
    mixture_params,
    plain_scheme,
    sample_gaussian_mixture,
    sample_losses,
    sample_tilted_mixture,
    self_structuring_inverse,
    self_structuring_oracle,
    self_structuring_sample,
    self_structuring_scheme,
    tilt_parameter,
)
from tailjax.stochopt.problems import portfolio_problem, portfolio_var_cvar

BETA = 1e-3


@pytest.fixture(scope="module")
def problem():
    with jax.enable_x64(True):
        p = portfolio_problem(4, "gaussian", dtype=jnp.float64)
        theta = p.theta_set.feasible_point(jnp.float64)
        var, cv = portfolio_var_cvar(p, theta, BETA)
    oracle = jax.jit(lambda k, u, th: self_structuring_oracle(k, u, th, p.dist, p.loss, BETA))
    return p, theta, float(var), float(cv), oracle


def test_oracle_minimises_estimated_second_moment(problem, x64):
    p, theta, var, _, oracle = problem
    h, info = oracle(jax.random.PRNGKey(0), var, theta)
    grid = np.asarray(info.h_grid)
    assert grid[0] <= float(h) <= grid[-1]
    assert float(info.log_m2) <= float(np.min(info.log_m2_grid)) + 1e-12
    np.testing.assert_allclose(grid, default_h_grid(BETA))
    assert int(info.fallback) == 0 and int(np.sum(info.hits)) >= 10


def test_oracle_falls_back_to_the_nominal_law_without_tail_hits(problem, x64):
    # at an absurd threshold no grid point sees the tail: it used to return the largest h
    # (s_h = 64, variance reduction <= 0.06 on a Gaussian problem); now s_h = 1, flagged
    p, theta, var, _, oracle = problem
    h_far, info = oracle(jax.random.PRNGKey(0), 1e6, theta)
    assert int(info.fallback) == 2
    assert float(h_far) * max(np.log(np.log(1 / BETA)), 1.0) == pytest.approx(1.0)
    assert np.all(np.asarray(info.hits) == 0) and np.isinf(float(info.log_m2))
    # a few hits (a 48-draw pilot far in the tail): the best estimate among the grid points
    # whose own draws reached the tail
    h, info = jax.jit(lambda k, u, th: self_structuring_oracle(
        k, u, th, p.dist, p.loss, BETA, pilot_size=48))(jax.random.PRNGKey(0), 4 * var, theta)
    hits = np.asarray(info.hits)
    assert int(info.fallback) == 1 and 0 < hits.sum() < 10
    grid = np.asarray(info.h_grid)
    assert grid[hits > 0].min() <= float(h) <= grid[hits > 0].max()
    assert np.all(np.isinf(np.asarray(info.log_m2_grid)[hits == 0]))


def test_oracle_choice_beats_plain_sampling(problem, x64):
    """The chosen h gives a much smaller spread of the CVaR estimate than plain MC."""
    p, theta, var, cv, oracle = problem
    h, _ = oracle(jax.random.PRNGKey(1), var, theta)
    n, reps = 2048, 60

    def est(k, h_):
        z, log_lr = self_structuring_sample(k, p.dist, n, h_, BETA)
        return is_var_cvar(sample_losses(p.loss, z, theta), log_lr, BETA)[1]

    keys = jax.random.split(jax.random.PRNGKey(2), reps)
    batch = jax.jit(jax.vmap(est, in_axes=(0, None)))
    ss = np.asarray(batch(keys, h))
    unit = 1.0 / max(np.log(np.log(1 / BETA)), 1.0)  # h with s_h = 1: plain MC
    plain = np.asarray(batch(keys, jnp.asarray(unit)))
    err = lambda e: np.sqrt(np.mean((e / cv - 1) ** 2))  # noqa: E731
    assert err(ss) < 0.5 * err(plain)


def test_schemes_shapes_and_jit(problem, x64):
    p, theta, var, _, _ = problem
    # (the self-structuring scheme runs under jit in the RA tests of tests/stochopt)
    schemes = [plain_scheme(p.dist), gaussian_tilting_scheme(jnp.zeros(4), jnp.eye(4), p.pieces)]
    for scheme in schemes:
        params = jax.jit(scheme.choose)(jax.random.PRNGKey(0), jnp.asarray(var), theta)
        z, log_lr = jax.jit(scheme.sample, static_argnums=2)(jax.random.PRNGKey(1), params, 32)
        assert z.shape == (32, 4) and log_lr.shape == (32,)
        assert np.all(np.isfinite(np.asarray(log_lr)))
    z, log_lr = schemes[0].sample(jax.random.PRNGKey(1), None, 8)
    np.testing.assert_array_equal(np.asarray(log_lr), 0.0)


def test_scheme_built_under_jit_with_a_traced_tail_prob(problem, x64):
    """One program for every tail level: the scheme is built inside jit (its NaN probe runs
    at trace time) and samples as the eagerly built one does."""
    p, theta, var, _, _ = problem

    @jax.jit
    def sample(key, h, tail_prob):
        return self_structuring_scheme(p.dist, p.loss, tail_prob).sample(key, h, 16)

    for tail_prob in (1e-2, 1e-3):
        eager = self_structuring_scheme(p.dist, p.loss, tail_prob).sample(jax.random.PRNGKey(3), 2.0, 16)
        traced = sample(jax.random.PRNGKey(3), 2.0, tail_prob)
        np.testing.assert_allclose(traced[0], eager[0], rtol=1e-12)
        np.testing.assert_allclose(traced[1], eager[1], rtol=1e-10)
    # the oracle needs a grid when tail_prob is traced
    with pytest.raises(ValueError, match="h_grid"):
        jax.jit(lambda b: self_structuring_scheme(p.dist, p.loss, b).choose(
            jax.random.PRNGKey(0), var, theta))(1e-3)


def test_oracle_bad_input():
    dist = gaussian(jnp.zeros(2))
    loss = lambda x, th: jnp.sum(x)  # noqa: E731
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="tail_prob"):
        self_structuring_oracle(key, 1.0, None, dist, loss, 2.0)
    with pytest.raises(ValueError, match="rho"):
        self_structuring_oracle(key, 1.0, None, dist, loss, 0.01, rho=-1.0)
    with pytest.raises(ValueError, match="h_grid"):
        self_structuring_oracle(key, 1.0, None, dist, loss, 0.01, h_grid=jnp.array([-1.0, 1.0]))
    with pytest.raises(ValueError, match="h_grid"):
        self_structuring_oracle(key, 1.0, None, dist, loss, 0.01, h_grid=jnp.array([1.0]))
    with pytest.raises(ValueError, match="h_grid must exceed"):  # s_h <= e^-rho somewhere
        self_structuring_oracle(key, 1.0, None, dist, loss, 0.01, h_grid=jnp.array([0.1, 1.0]))
    with pytest.raises(ValueError, match="pilot_size"):
        self_structuring_oracle(key, 1.0, None, dist, loss, 0.01, pilot_size=4)
    with pytest.raises(ValueError, match="tail_prob"):
        self_structuring_scheme(dist, loss, 0.0)


def test_gaussian_tilting_scheme_rejects_a_covariance_that_does_not_fit_the_mean():
    pieces = lambda th: (jnp.eye(3), jnp.zeros(3))  # noqa: E731
    with pytest.raises(ValueError, match=r"cov must have shape \(3, 3\)"):
        gaussian_tilting_scheme(jnp.zeros(3), jnp.eye(4), pieces)
    with pytest.raises(ValueError, match="cov must be symmetric positive definite"):
        gaussian_tilting_scheme(jnp.zeros(3), jnp.diag(jnp.asarray([1.0, -1.0, 1.0])), pieces)



def _unit_log_mgf(b):  # N(0, I)
    return 0.5 * jnp.sum(b**2)


def _mixture():
    a, b, _ = gaussian_dominating_points(jnp.eye(2)[:1], jnp.ones(1), jnp.zeros(2), jnp.eye(2))
    return mixture_params(_unit_log_mgf, a, b)


def _tilted(key, b, n):
    return b + jax.random.normal(key, (n, b.shape[0]))


def _sum_loss(x, theta):
    return jnp.sum(x)


_KEY = jax.random.PRNGKey(0)


# each was truncated (2.5 -> 2) or failed inside JAX or NumPy with a TypeError
@pytest.mark.parametrize("name,call", [
    pytest.param("steps", lambda: self_structuring_inverse(jnp.ones(2), 1.0, 0.01, steps=2.5),
                 id="self_structuring_inverse"),
    pytest.param("n", lambda: self_structuring_sample(_KEY, gaussian(jnp.zeros(2)), 2.5, 1.0, 0.01),
                 id="self_structuring_sample"),
    pytest.param("max_iter", lambda: tilt_parameter(_unit_log_mgf, jnp.ones(2), max_iter=2.5), id="tilt_parameter"),
    pytest.param("max_iter", lambda: dominating_point(_unit_log_mgf, jnp.ones(2), 1.0, max_iter=2.5),
                 id="dominating_point"),
    pytest.param("n", lambda: sample_tilted_mixture(_KEY, _mixture(), 2.5, _tilted), id="sample_tilted_mixture"),
    pytest.param("n", lambda: sample_gaussian_mixture(_KEY, _mixture(), 2.5, jnp.eye(2)),
                 id="sample_gaussian_mixture"),
    pytest.param("num", lambda: default_h_grid(0.01, num=4.5), id="default_h_grid"),
    pytest.param("pilot_size", lambda: self_structuring_oracle(
        _KEY, 1.0, None, gaussian(jnp.zeros(2)), _sum_loss, 0.01, pilot_size=64.5), id="oracle-pilot_size"),
    pytest.param("refine_steps", lambda: self_structuring_scheme(
        gaussian(jnp.zeros(2)), _sum_loss, 0.01, refine_steps=2.5), id="scheme-refine_steps"),
    pytest.param("min_hits", lambda: self_structuring_scheme(gaussian(jnp.zeros(2)), _sum_loss, 0.01, min_hits=2.5),
                 id="scheme-min_hits"),
    pytest.param("dim", lambda: iid_student_t(3.0, 2.5), id="iid_student_t"),
    pytest.param("dim", lambda: iid_weibull(0.5, 2.5), id="iid_weibull"),
    pytest.param("dim", lambda: iid_pareto(2.0, 2.5), id="iid_pareto"),
])
def test_fractional_counts_are_refused_not_truncated(name, call):
    with pytest.raises(ValueError, match=rf"^{name} must be an integer"):
        call()


def test_numpy_integer_counts_still_work():
    dist = iid_pareto(2.0, np.int64(2))
    assert dist.dim == 2 and type(dist.dim) is int
    np.testing.assert_array_equal(default_h_grid(0.01, np.int64(4)), default_h_grid(0.01, 4))
    key = jax.random.PRNGKey(0)
    for got, want in zip(self_structuring_sample(key, dist, np.int64(8), 1.0, 0.01),
                         self_structuring_sample(key, dist, 8, 1.0, 0.01)):
        np.testing.assert_array_equal(got, want)

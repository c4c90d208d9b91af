"""Exponential tilting: dominating points (closed form and generic Newton), KKT, tilted
means, mixture likelihood ratios."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tailjax.importance import (
    dominating_point,
    dominating_points,
    gaussian_dominating_points,
    gaussian_log_mgf,
    mixture_log_lr,
    mixture_params,
    rate_function,
    sample_gaussian_mixture,
    sample_tilted_mixture,
    tilt_parameter,
)

MEAN = np.array([0.5, -0.2, 0.1])
COV = np.array([[1.0, 0.3, 0.1], [0.3, 2.0, -0.4], [0.1, -0.4, 0.5]])
G_NP = np.array([[1.0, 0.5, -0.2], [-0.3, 1.0, 0.4], [0.2, -0.1, 1.5]])


def _data():
    return jnp.asarray(MEAN), jnp.asarray(COV), jnp.asarray(G_NP)


def _poisson_log_mgf(b, rate):
    """Independent Poisson coordinates: Lambda(b) = sum rate (e^b - 1)."""
    return jnp.sum(rate * jnp.expm1(b))


def test_gaussian_dominating_points_kkt(x64):
    mean, cov, G = _data()
    levels = jnp.array([3.0, 4.0, -5.0])  # the last half-space already holds the mean
    a, b, rate = jax.jit(gaussian_dominating_points)(G, levels, mean, cov)
    for i in range(2):
        np.testing.assert_allclose(G[i] @ a[i], levels[i], rtol=1e-12)  # active constraint
        # KKT: grad Lambda*(a) = S^-1 (a - m) = lam g with lam >= 0, and it is the tilt b.
        grad_rate = jnp.linalg.solve(cov, a[i] - mean)
        lam = float(grad_rate @ G[i] / (G[i] @ G[i]))
        assert lam > 0
        np.testing.assert_allclose(grad_rate, lam * G[i], atol=1e-12)
        np.testing.assert_allclose(b[i], grad_rate, atol=1e-12)
        # the tilted mean is the dominating point: grad Lambda(b) = m + S b = a
        np.testing.assert_allclose(jax.grad(gaussian_log_mgf)(b[i], mean, cov), a[i], atol=1e-12)
        np.testing.assert_allclose(rate[i], 0.5 * (a[i] - mean) @ grad_rate, rtol=1e-12)
    np.testing.assert_allclose(a[2], mean)
    np.testing.assert_allclose(b[2], 0.0)
    # any other feasible point has a larger rate
    rng = np.random.default_rng(0)
    for _ in range(50):
        y = np.asarray(a[0]) + rng.normal(size=3)
        if float(G[0] @ y) >= float(levels[0]):
            assert 0.5 * (y - mean) @ np.linalg.solve(cov, y - mean) >= float(rate[0]) - 1e-12


def test_generic_path_matches_gaussian_closed_form(x64):
    mean, cov, G = _data()
    log_mgf = partial(gaussian_log_mgf, mean=mean, cov=cov)
    levels = jnp.array([3.0, 4.0, -5.0])
    a_ref, b_ref, rate_ref = gaussian_dominating_points(G, levels, mean, cov)
    a, b = jax.jit(lambda g, v: dominating_points(log_mgf, g, v))(G, levels)
    np.testing.assert_allclose(a, a_ref, atol=1e-9)
    np.testing.assert_allclose(b, b_ref, atol=1e-9)
    rates = jax.vmap(lambda ai: rate_function(log_mgf, ai))(a_ref[:2])
    np.testing.assert_allclose(rates, rate_ref[:2], rtol=1e-9)


def test_generic_dominating_point_kkt_poisson(x64):
    rate = jnp.array([2.0, 5.0, 1.0])
    log_mgf = partial(_poisson_log_mgf, rate=rate)
    g = jnp.array([1.0, 0.5, 2.0])
    v = 25.0  # mean g^T rate = 6.5
    a, b = jax.jit(lambda gg, vv: dominating_point(log_mgf, gg, vv))(g, v)
    rate_fn = jax.jit(lambda x: rate_function(log_mgf, x))
    np.testing.assert_allclose(g @ a, v, rtol=1e-10)
    np.testing.assert_allclose(a, rate * jnp.exp(b), rtol=1e-10)  # tilted Poisson mean
    # grad Lambda*(a) (by autodiff of the conjugate solve) is the tilt, parallel to g
    grad_star = jax.jit(jax.grad(lambda x: rate_function(log_mgf, x)))(a)
    np.testing.assert_allclose(grad_star, b, rtol=1e-8)
    lam = float(b @ g / (g @ g))
    assert lam > 0
    np.testing.assert_allclose(b, lam * g, atol=1e-10)
    # the tilt solve inverts grad Lambda
    np.testing.assert_allclose(jax.jit(lambda x: tilt_parameter(log_mgf, x))(a), b, atol=1e-9)
    # rate is minimal among feasible points nearby
    ra = float(rate_fn(a))
    rng = np.random.default_rng(1)
    for _ in range(20):
        y = np.asarray(a) + 0.3 * rng.normal(size=3)
        y = y + max(v - float(g @ y), 0.0) * np.asarray(g) / float(g @ g)  # push onto the set
        if np.all(y > 0):
            assert float(rate_fn(jnp.asarray(y))) >= ra - 1e-9
    # slack constraint: no tilt
    a0, b0 = jax.jit(lambda gg, vv: dominating_point(log_mgf, gg, vv))(g, 1.0)
    np.testing.assert_allclose(b0, 0.0)
    np.testing.assert_allclose(a0, rate)


def test_tilted_samples_have_mean_a(x64):
    mean, cov, G = _data()
    log_mgf = partial(gaussian_log_mgf, mean=mean, cov=cov)
    a, b, _ = gaussian_dominating_points(G[:1], jnp.array([3.0]), mean, cov)
    params = mixture_params(log_mgf, a, b)
    z, log_lr = jax.jit(sample_gaussian_mixture, static_argnums=2)(jax.random.PRNGKey(0), params, 40_000, jnp.linalg.cholesky(cov))
    se = np.sqrt(np.diag(np.asarray(cov)) / 40_000)
    assert np.all(np.abs(np.asarray(z.mean(0) - a[0])) < 4.5 * se)
    # the generic sampler path draws each component and picks one per sample
    sampler = lambda k, bb, n: jnp.asarray(MEAN) + jax.random.normal(k, (n, 3), jnp.float64) @ jnp.linalg.cholesky(cov).T + cov @ bb  # noqa: E731
    zg, log_lr_g = jax.jit(lambda k, pr: sample_tilted_mixture(k, pr, 40_000, sampler))(jax.random.PRNGKey(1), params)
    assert np.all(np.abs(np.asarray(zg.mean(0) - a[0])) < 4.5 * se)
    np.testing.assert_allclose(log_lr_g, jax.jit(jax.vmap(lambda zz: mixture_log_lr(zz, params)))(zg), rtol=1e-12)


def test_mixture_likelihood_ratio(x64):
    mean, cov, G = _data()
    log_mgf = partial(gaussian_log_mgf, mean=mean, cov=cov)
    a, b, rate = gaussian_dominating_points(G, jnp.array([3.0, 4.0, 3.5]), mean, cov)
    sample = jax.jit(sample_gaussian_mixture, static_argnums=2)
    for weighting in ("uniform", "rate"):
        params = mixture_params(log_mgf, a, b, weighting)
        expected = -rate if weighting == "rate" else jnp.zeros(3)
        np.testing.assert_allclose(params.log_weights, expected - jax.scipy.special.logsumexp(expected), atol=1e-10)
        # log L = log f - log(sum_i p_i g_i) with the explicit Gaussian densities
        x = jnp.array([1.0, 2.0, -0.5])
        logf = jax.scipy.stats.multivariate_normal.logpdf(x, mean, cov)
        logg = jax.scipy.special.logsumexp(
            params.log_weights + jax.vmap(lambda ai: jax.scipy.stats.multivariate_normal.logpdf(x, ai, cov))(a)
        )
        np.testing.assert_allclose(mixture_log_lr(x, params), logf - logg, rtol=1e-10)
        # E_g[L] = 1
        _, log_lr = sample(jax.random.PRNGKey(3), params, 200_000, jnp.linalg.cholesky(cov))
        lr = np.exp(np.asarray(log_lr))
        assert abs((lr.mean() - 1) / (lr.std() / np.sqrt(lr.size))) < 4


def test_bad_weighting():
    with pytest.raises(ValueError, match="weighting"):
        mixture_params(lambda b: jnp.sum(b**2), jnp.zeros((1, 2)), jnp.zeros((1, 2)), "other")

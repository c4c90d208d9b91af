"""The self-structuring transformation T_h: Jacobian, density, inverse, unbiasedness with
light and heavy tails, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from tailjax.importance import (
    Distribution,
    gaussian,
    iid_pareto,
    iid_student_t,
    iid_weibull,
    is_tail_expectation,
    is_tail_probability,
    multivariate_t,
    self_structuring_inverse,
    self_structuring_log_density,
    self_structuring_log_jacobian,
    self_structuring_log_lr,
    self_structuring_sample,
    self_structuring_scheme,
    self_structuring_transform,
    structuring_scale,
)


def _points(key, d, num):
    """Random points away from ties in ||x||_inf and from 0."""
    x = 2.0 * jax.random.normal(key, (num, d), jnp.float64)
    ax = np.sort(np.abs(np.asarray(x)), axis=1)
    ok = (ax[:, -1] - ax[:, -2] > 0.05) if d > 1 else np.ones(num, bool)
    ok &= np.min(ax, axis=1) > 1e-3
    return x[ok]


@jax.jit
def _logdets(xs, h, rho):
    jac = jax.vmap(jax.jacobian(lambda x: self_structuring_transform(x, h, 1e-3, rho)))(xs)
    sign, logdet = jnp.linalg.slogdet(jac)
    ours = jax.vmap(lambda x: self_structuring_log_jacobian(x, h, 1e-3, rho))(xs)
    return sign, logdet, ours


@pytest.mark.parametrize("d", [1, 2, 5])
def test_log_jacobian_matches_autodiff(d, x64):
    xs = _points(jax.random.PRNGKey(d), d, 40)
    for rho in (1.0, 2.0):
        for h in (0.7, 2.0, 5.0):
            sign, logdet, ours = _logdets(xs, jnp.asarray(h), jnp.asarray(rho))
            assert np.all(np.asarray(sign) > 0)
            np.testing.assert_allclose(ours, logdet, rtol=1e-10, atol=1e-10)


def _h_for_scale(s, beta):
    return s / max(np.log(np.log(1 / beta)), 1.0)


@pytest.mark.parametrize("d", [2, 5])
def test_log_jacobian_matches_jacfwd_for_scales_below_one(d, x64):
    # eq. (17)'s prod J~ / max J~ is right only for s_h >= 1; below, the Jacobian was wrong
    # in every d >= 2 case (and NaN for s_h < e^-rho)
    xs = _points(jax.random.PRNGKey(10 + d), d, 40)
    beta = 1e-2
    for rho in (1.0, 2.0):
        for s in (0.2, 0.4, 0.76, 0.95, 1.0, 8.0):
            if s <= np.exp(-rho):
                continue
            h = _h_for_scale(s, beta)
            jac = jax.vmap(jax.jacfwd(lambda x: self_structuring_transform(x, h, beta, rho)))(xs)
            sign, logdet = jnp.linalg.slogdet(jac)
            ours = self_structuring_log_jacobian(xs, h, beta, rho)  # a batch of rows
            assert np.all(np.asarray(sign) > 0)
            np.testing.assert_allclose(ours, logdet, rtol=1e-10, atol=1e-10)


def test_inverse_with_scale_below_one_returns_the_point(x64):
    xs = 3.0 * jax.random.normal(jax.random.PRNGKey(6), (300, 4), jnp.float64)
    for rho, s in ((1.0, 0.4), (1.0, 0.76), (2.0, 0.2)):
        h = _h_for_scale(s, 1e-2)
        z = self_structuring_transform(xs, h, 1e-2, rho)
        np.testing.assert_allclose(self_structuring_inverse(z, h, 1e-2, rho), xs, rtol=1e-9, atol=1e-9)


def test_transform_of_a_batch_uses_each_rows_own_max(x64):
    # a batch used to share one ||x||_inf (the maximum over the whole batch)
    xs = jnp.array([[0.5, -0.2, 0.1], [10.0, 3.0, -1.0]])
    for f in (self_structuring_transform, self_structuring_log_jacobian):
        batched = f(xs, 2.0, 1e-3)
        rows = jnp.stack([f(x, 2.0, 1e-3) for x in xs])
        np.testing.assert_allclose(batched, rows, rtol=1e-12)
    z = self_structuring_transform(xs, 2.0, 1e-3)
    np.testing.assert_allclose(self_structuring_inverse(z, 2.0, 1e-3), xs, rtol=1e-10)


def test_pushforward_integrates_to_one_below_unit_scale(x64):
    beta = 1e-2
    h = 0.5  # s_h = 0.76
    dist = gaussian(jnp.zeros(2), jnp.array([[1.0, 0.3], [0.3, 1.0]]))
    g = jnp.linspace(-8.0, 8.0, 641)
    Z = jnp.stack(jnp.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    logg = jax.jit(jax.vmap(lambda z: self_structuring_log_density(z, h, beta, dist.log_prob)))(Z)
    total = float(jnp.trapezoid(jnp.trapezoid(jnp.exp(logg).reshape(641, 641), g, axis=1), g))
    assert total == pytest.approx(1.0, abs=2e-3)
    # E[L] = 1 (was 0.872 at h = 0.5 and 0.958 at h = 0.6 in d = 3)
    for h in (0.5, 0.6):
        _, log_lr = self_structuring_sample(jax.random.PRNGKey(2), gaussian(jnp.zeros(3)), 200_000, h, beta)
        lr = np.exp(np.asarray(log_lr))
        assert abs(lr.mean() - 1.0) < 4 * lr.std() / np.sqrt(lr.size)


def test_inadmissible_scale_raises_naming_h_and_tail_prob():
    # s_h <= e^-rho: the coordinate maps fold near 0, T_h is not invertible; the inverse
    # used to return another preimage (81% of Gaussian points wrong by up to 0.49 at s_h = 0.2)
    with pytest.raises(ValueError, match=r"h=0.2 at tail_prob=0.01"):
        self_structuring_transform(jnp.ones(2), 0.2, 0.01)
    with pytest.raises(ValueError, match=r"h=0.1 at tail_prob=0.01 gives s_h"):
        self_structuring_inverse(jnp.ones(2), 0.1, 0.01)
    back = jax.jit(lambda h: self_structuring_inverse(jnp.ones(2), h, 0.01))(0.1)
    assert np.all(np.isnan(np.asarray(back)))
    self_structuring_transform(jnp.ones(2), 0.2, 0.01, rho=2.0)  # e^-2 < s_h = 0.31: fine
    # traced: NaN instead of a wrong number
    out = jax.jit(lambda h: self_structuring_log_jacobian(jnp.ones(2), h, 0.01))(0.2)
    assert np.isnan(float(out))


def test_transform_structure(x64):
    x = jnp.array([0.3, -2.0, 1.1])
    h, beta = 2.0, 1e-4
    s = float(structuring_scale(h, beta))
    assert s == pytest.approx(h * max(np.log(np.log(1e4)), 1.0))
    z = self_structuring_transform(x, h, beta, rho=1.0)
    np.testing.assert_array_equal(np.sign(z), np.sign(x))
    assert float(z[1]) == pytest.approx(-2.0 * s)  # the largest coordinate is scaled by s^(1/rho)
    assert np.all(np.abs(np.asarray(z)) <= np.abs(float(z[1])))
    z2 = self_structuring_transform(x, h, beta, rho=2.0)
    assert float(z2[1]) == pytest.approx(-2.0 * np.sqrt(s))
    np.testing.assert_allclose(self_structuring_transform(jnp.zeros(3), h, beta), 0.0)


def test_inverse_round_trip(x64):
    xs = 3.0 * jax.random.normal(jax.random.PRNGKey(5), (200, 4), jnp.float64)

    @jax.jit
    def round_trip(h, rho):
        z = jax.vmap(lambda x: self_structuring_transform(x, h, 1e-2, rho))(xs)
        return jax.vmap(lambda zz: self_structuring_inverse(zz, h, 1e-2, rho))(z)

    for rho in (1.0, 2.0):
        for h in (1.0, 4.0):
            np.testing.assert_allclose(round_trip(jnp.asarray(h), jnp.asarray(rho)), xs, rtol=1e-9, atol=1e-9)


def test_pushforward_density_integrates_to_one_1d(x64):
    zs = jnp.linspace(-300.0, 300.0, 60_001)
    for dist in (gaussian(jnp.zeros(1)), iid_student_t(3.0, 1, jnp.float64)):

        @jax.jit
        def total(h, dist=dist):
            logg = jax.vmap(lambda z: self_structuring_log_density(z[None], h, 1e-3, dist.log_prob))(zs)
            return jnp.trapezoid(jnp.exp(logg), zs)

        for h in (1.0, 3.0):
            assert float(total(jnp.asarray(h))) == pytest.approx(1.0, abs=3e-3)


def test_pushforward_density_integrates_to_one_2d(x64):
    h, beta = 1.5, 1e-3
    dist = gaussian(jnp.zeros(2), jnp.array([[1.0, 0.3], [0.3, 1.0]]))
    # The density has kinks on the diagonals |z1| = |z2| (first-order trapezoid error).
    g = jnp.linspace(-10.0, 10.0, 801)
    Z = jnp.stack(jnp.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    logg = jax.jit(jax.vmap(lambda z: self_structuring_log_density(z, h, beta, dist.log_prob)))(Z)
    dens = jnp.exp(logg).reshape(801, 801)
    total = float(jnp.trapezoid(jnp.trapezoid(dens, g, axis=1), g))
    assert total == pytest.approx(1.0, abs=2e-3)


def test_likelihood_ratio_has_mean_one(x64):
    dist = gaussian(jnp.zeros(3))
    _, log_lr = self_structuring_sample(jax.random.PRNGKey(2), dist, 200_000, 1.2, 1e-2)
    lr = np.exp(np.asarray(log_lr))
    z = (lr.mean() - 1.0) / (lr.std() / np.sqrt(lr.size))
    assert abs(z) < 4


def _heavy_case(name):
    if name == "student_t":
        dist = iid_student_t(3.0, 1, jnp.float64)
        u = 10.0
        exact = (3 + u * u) / 2 * stats.t.pdf(u, 3) - u * stats.t.sf(u, 3)  # E (T - u)_+
        return dist, u, exact, "expectation", lambda x, th: x[0]
    if name == "pareto":
        a, u = 2.5, 30.0
        dist = iid_pareto(a, 2, dtype=jnp.float64)
        exact = 2 * (1 + u) ** (1 - a) / (a - 1) - (1 + u) ** (1 - 2 * a) / (2 * a - 1)  # E (max - u)_+
        return dist, u, exact, "expectation", lambda x, th: jnp.max(x)
    k, u = 0.5, 60.0
    dist = iid_weibull(k, 2, dtype=jnp.float64)
    p1 = np.exp(-(u**k))
    return dist, u, 1 - (1 - p1) ** 2, "probability", lambda x, th: jnp.max(x)


@pytest.mark.parametrize("name", ["student_t", "pareto", "weibull"])
def test_heavy_tailed_is_unbiased(name, x64):
    dist, u, exact, kind, loss = _heavy_case(name)
    n, reps, h = 512, 300, 2.0

    def one(k):
        z, log_lr = self_structuring_sample(k, dist, n, h, 1e-3)
        losses = jax.vmap(lambda zz: loss(zz, None))(z)
        f = is_tail_expectation if kind == "expectation" else is_tail_probability
        return f(losses, log_lr, jnp.asarray(u))

    est = np.asarray(jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(7), reps)))
    z = (est.mean() - exact) / (est.std(ddof=1) / np.sqrt(reps))
    assert abs(z) < 4, (est.mean(), exact)


def test_sample_vmaps_over_h():
    dist = multivariate_t(3.0, jnp.zeros(2))
    hs = jnp.array([0.8, 1.6, 3.2])
    z, log_lr = jax.jit(jax.vmap(lambda h: self_structuring_sample(jax.random.PRNGKey(0), dist, 64, h, 1e-2)))(hs)
    assert z.shape == (3, 64, 2) and log_lr.shape == (3, 64)
    # the same nominal draws are stretched further for larger h
    assert np.all(np.max(np.abs(np.asarray(z[2])), 1) >= np.max(np.abs(np.asarray(z[0])), 1))


def test_bad_input_raises():
    x = jnp.ones(2)
    with pytest.raises(ValueError, match="h"):
        self_structuring_transform(x, 0.0, 0.01)
    with pytest.raises(ValueError, match="h"):
        self_structuring_log_jacobian(x, -1.0, 0.01)
    with pytest.raises(ValueError, match="rho"):
        self_structuring_transform(x, 1.0, 0.01, rho=0.0)
    with pytest.raises(ValueError, match="tail_prob"):
        self_structuring_transform(x, 1.0, 1.0)
    with pytest.raises(ValueError, match="tail_prob"):
        structuring_scale(1.0, 0.0)
    dist = gaussian(jnp.zeros(2))
    with pytest.raises(ValueError, match="n must be"):
        self_structuring_sample(jax.random.PRNGKey(0), dist, 0, 1.0, 0.01)


def test_nan_log_density_is_reported():
    base = gaussian(jnp.zeros(2))
    bad = Distribution(base.sample, lambda x: jnp.where(x[0] > 0, jnp.nan, base.log_prob(x)), 2)
    with pytest.raises(ValueError, match="NaN"):
        self_structuring_scheme(bad, lambda x, th: jnp.sum(x), 0.01)
    with pytest.raises(Exception, match="NaN"):
        self_structuring_sample(jax.random.PRNGKey(0), bad, 16, 1.0, 0.01, checked=True)
    # the unchecked path still runs (NaN propagates to the caller)
    _, log_lr = self_structuring_log_lr(jnp.array([1.0, 0.0]), 1.0, 0.01, bad.log_prob)
    assert np.isnan(float(log_lr))

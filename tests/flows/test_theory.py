"""TFFT's theory, checked numerically: the threshold objectives' second derivatives (corrected
from the paper's Theorem 5.1), F_L's two local maxima on a bimodal reward, and Stein's
identity E*[r] = sigma^2 / alpha for every tilt of a Gaussian reward (TFFT's Table 4)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

from tailjax.risk import pseudo_reward, solve_threshold, threshold_objective

W, MU, S = np.array([0.5, 0.5]), np.array([0.0, 6.0]), np.array([0.5, 0.5])  # bimodal reward law


def _mixture(t):
    """Density and CDF of the reward mixture at t."""
    return (jnp.sum(W * norm.pdf(t, MU, S)), jnp.sum(W * norm.cdf(t, MU, S)))


def _closed_form(t, beta, alpha, side):
    """F(t), q(t) (tilted mass beyond t) and M(t) for the Gaussian-mixture reward, in closed form.

    Lower: M = P(r >= t) + sum_i w_i exp((mu_i - t)/c + s_i^2/(2c^2)) Phi((t - mu_i - s_i^2/c)/s_i),
    c = alpha beta; upper likewise with c = alpha (1 - beta) and the upper tail."""
    c = alpha * beta if side == "lower" else alpha * (1.0 - beta)
    _, cdf = _mixture(t)
    if side == "lower":
        tilted = jnp.sum(W * jnp.exp((MU - t) / c + S**2 / (2 * c**2)) * norm.cdf((t - MU - S**2 / c) / S))
        m = (1.0 - cdf) + tilted
    else:
        tilted = jnp.sum(W * jnp.exp((MU - t) / c + S**2 / (2 * c**2)) * norm.sf((t - MU - S**2 / c) / S))
        m = cdf + tilted
    return t + alpha * jnp.log(m), tilted / m, m


@pytest.mark.parametrize("side,beta,alpha", [("lower", 0.2, 3.0), ("lower", 0.3, 1.0), ("upper", 0.8, 1.0),
                                             ("upper", 0.7, 3.0)])
def test_corrected_second_derivatives(side, beta, alpha, x64):
    """F_L'' = q(1-q)/(alpha beta^2) - p(t)/(beta M) and F_R'' = q(1-q)/(alpha (1-beta)^2) + p(t)/((1-beta) M)
    against finite differences; the closed form is the library's F on a fine quadrature grid."""
    grid = jnp.linspace(-8.0, 14.0, 40_001)
    dens = jnp.sum(W[:, None] * norm.pdf(grid[None], MU[:, None], S[:, None]), axis=0)
    ts = jnp.linspace(-1.0, 7.0, 17)
    f = lambda t: _closed_form(t, beta, alpha, side)[0]
    lib = jax.vmap(lambda t: threshold_objective(t, grid, beta, alpha, side, weights=dens))(ts)
    np.testing.assert_allclose(jax.vmap(f)(ts), lib, atol=1e-5)
    h = 1e-3
    fd = (jax.vmap(f)(ts + h) - 2 * jax.vmap(f)(ts) + jax.vmap(f)(ts - h)) / h**2
    _, q, m = jax.vmap(lambda t: _closed_form(t, beta, alpha, side))(ts)
    p = jax.vmap(lambda t: _mixture(t)[0])(ts)
    if side == "lower":
        formula = q * (1 - q) / (alpha * beta**2) - p / (beta * m)
        paper = -p / (beta * m)  # Theorem 5.1's F_L'' lacks the variance term
    else:
        formula = q * (1 - q) / (alpha * (1 - beta) ** 2) + p / ((1 - beta) * m)
        paper = None
    np.testing.assert_allclose(fd, formula, rtol=1e-4, atol=1e-4)
    if paper is not None:
        assert float(jnp.max(fd)) > 0.1  # F_L is convex somewhere: not concave
        assert float(jnp.max(jnp.abs(fd - paper))) > 0.1
    else:
        assert float(jnp.min(fd)) > -1e-6  # F_R is convex


def test_bimodal_reward_gives_two_local_maxima_of_f_left(x64):
    """alpha = 3, beta = 0.2, reward 0.5 N(0, 0.25) + 0.5 N(6, 0.25): F_L has local maxima near 0.2
    and 5.7; solve_threshold finds the global one, gradient ascent from t = -1 stops at the other."""
    beta, alpha = 0.2, 3.0
    f = lambda t: _closed_form(t, beta, alpha, "lower")[0]
    ts = jnp.linspace(-3.0, 10.0, 2601)
    values = np.asarray(jax.vmap(f)(ts))
    local = [float(ts[i]) for i in range(1, ts.shape[0] - 1) if values[i] > values[i - 1] and values[i] > values[i + 1]]
    assert len(local) == 2 and local[0] < 1.0 < 5.0 < local[1]
    grid = jnp.linspace(-8.0, 14.0, 40_001)
    dens = jnp.sum(W[:, None] * norm.pdf(grid[None], MU[:, None], S[:, None]), axis=0)
    t_star = float(solve_threshold(grid, beta, alpha, "lower", dens))
    assert abs(t_star - local[1]) < 0.02 and f(t_star) > f(local[0]) + 3.0

    @jax.jit
    def ascend(t):
        return jax.lax.fori_loop(0, 2000, lambda _, t: t + 0.05 * jax.grad(f)(t), t)

    stuck = float(ascend(jnp.asarray(-1.0)))
    assert abs(stuck - local[0]) < 0.02
    assert abs(float(jax.grad(f)(stuck))) < 1e-6  # a true stationary point, not the optimum


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_stein_identity_for_every_tilt(alpha, x64):
    """r ~ N(0, 2) (TFFT Table 4: prior N(0, I_2), r = x1 + x2): E*[r] = 2 E*[dr*/dr] / alpha =
    2 / alpha for EXP-FT, L-TFFT (beta = 0.2) and R-TFFT (beta = 0.8), since t* is the
    beta-quantile of p* (Theorems 4.1-4.2)."""
    r = jnp.linspace(-40.0, 60.0, 100_001)
    log_prior = norm.logpdf(r, scale=jnp.sqrt(2.0))
    tilts = {"EXP-FT": r / alpha}
    for name, beta, side in (("L-TFFT", 0.2, "lower"), ("R-TFFT", 0.8, "upper")):
        t = solve_threshold(r, beta, alpha, side, jnp.exp(log_prior))
        tilts[name] = pseudo_reward(r, t, beta, side) / alpha
    for name, tilt in tilts.items():
        w = jax.nn.softmax(log_prior + tilt)
        np.testing.assert_allclose(float(w @ r), 2.0 / alpha, rtol=2e-4, err_msg=name)

"""TFFT's threshold problems: convexity/concavity, optimality, Theorems 4.1-4.2."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, optimize, stats

from tailjax import risk

SCALE = np.sqrt(2.0)  # r = x1 + x2 with x ~ N(0, I2): r ~ N(0, 2)


def _quadrature_threshold(beta, alpha, side):
    def objective(t):
        if side == "upper":
            f = lambda r: stats.norm.pdf(r, 0, SCALE) * np.exp(max(r - t, 0) / (alpha * (1 - beta)))
        else:
            f = lambda r: stats.norm.pdf(r, 0, SCALE) * np.exp(-max(t - r, 0) / (alpha * beta))
        value, _ = integrate.quad(f, -40, 40, points=[t], limit=500)
        return t + alpha * np.log(value)

    sign = 1.0 if side == "upper" else -1.0
    res = optimize.minimize_scalar(lambda t: sign * objective(t), bounds=(-5, 12), method="bounded",
                                   options={"xatol": 1e-10})
    return res.x


@pytest.fixture(scope="module")
def rewards():
    with jax.enable_x64(True):
        return SCALE * jax.random.normal(jax.random.PRNGKey(0), (200_000,), jnp.float64)


def test_pseudo_reward():
    r = jnp.asarray([-1.0, 0.5, 2.0])
    np.testing.assert_allclose(risk.pseudo_reward(r, 0.5, 0.8, "upper"), [0.0, 0.0, 7.5], rtol=1e-6)
    np.testing.assert_allclose(risk.pseudo_reward(r, 0.5, 0.2, "lower"), [-7.5, 0.0, 0.0], rtol=1e-6)


def test_right_convex_left_concave(rewards):
    with jax.enable_x64(True):
        grid = jnp.linspace(-2.0, 4.0, 61)
        f_r = jax.vmap(lambda t: risk.threshold_objective(t, rewards, 0.8, 5.0, "upper"))(grid)
        f_l = jax.vmap(lambda t: risk.threshold_objective(t, rewards, 0.2, 1.0, "lower"))(grid)
        assert float(jnp.min(f_r[2:] - 2 * f_r[1:-1] + f_r[:-2])) >= -1e-10
        assert float(jnp.max(f_l[2:] - 2 * f_l[1:-1] + f_l[:-2])) <= 1e-5


@pytest.mark.parametrize("side, beta, alpha", [("upper", 0.8, 5.0), ("lower", 0.2, 1.0), ("lower", 0.1, 0.5)])
def test_matches_quadrature(rewards, side, beta, alpha):
    with jax.enable_x64(True):
        t = float(risk.solve_threshold(rewards, beta, alpha, side))
    assert t == pytest.approx(_quadrature_threshold(beta, alpha, side), abs=0.05)


def test_quadrature_reference_values_of_tfft_table4():
    # the exact thresholds quoted for TFFT's Table 4 (r ~ N(0, 2), alpha = 1)
    assert _quadrature_threshold(0.2, 1.0, "lower") == pytest.approx(1.457, abs=1e-3)
    assert _quadrature_threshold(0.8, 1.0, "upper") == pytest.approx(5.277, abs=1e-3)


@pytest.mark.parametrize("side, beta, alpha", [("upper", 0.8, 1.0), ("upper", 0.5, 0.3), ("lower", 0.2, 1.0)])
def test_optimal_and_accurate(side, beta, alpha, x64):
    r = jax.random.gumbel(jax.random.PRNGKey(1), (3000,), jnp.float64)
    t, info = risk.solve_threshold(r, beta, alpha, side, return_info=True)
    grid = jnp.concatenate([jnp.linspace(-3, 8, 4001), r])
    f = jax.vmap(lambda s: risk.threshold_objective(s, r, beta, alpha, side))(grid)
    f_t = risk.threshold_objective(t, r, beta, alpha, side)
    if side == "upper":
        assert float(f_t) <= float(jnp.min(f)) + 1e-12
        # F_R is C^1 on the empirical distribution: the derivative vanishes at t*.
        assert abs(float(info.derivative)) < 1e-4
        # bracket below the relative tolerance
        assert float(info.bracket_width) <= 1e-6 * (abs(float(t)) + float(info.bracket_width))
    else:
        assert float(f_t) >= float(jnp.max(f)) - 1e-12
        assert bool(jnp.any(r == t))  # the left optimum is a sample


@pytest.mark.parametrize("side, beta", [("upper", 0.8), ("lower", 0.2), ("upper", 0.3)])
def test_threshold_is_quantile_of_tilted_target(side, beta, x64):
    """TFFT Theorems 4.1-4.2: t* is the beta-quantile of p* ∝ p exp(r*_{t*} / alpha)."""
    alpha = 2.0
    r = SCALE * jax.random.normal(jax.random.PRNGKey(2), (5000,), jnp.float64)
    t = risk.solve_threshold(r, beta, alpha, side, rtol=1e-12)
    w = jnp.exp(risk.pseudo_reward(r, t, beta, side) / alpha)
    # The tilted CDF crosses beta within the solver's tolerance of t* (at a kink it jumps
    # over beta by one atom's tilted mass).
    delta = 1e-11 * abs(float(t)) + 1e-14
    cdf = lambda s: float(jnp.sum(jnp.where(r <= s, w, 0.0)) / jnp.sum(w))  # noqa: E731
    assert cdf(t - delta) <= beta + 1e-9
    assert cdf(t + delta) >= beta - 1e-9
    # VaR in tailjax's convention (tail mass 1 - beta) of the tilted sample is the sample
    # at which that crossing happens.
    q = risk.var(r, 1.0 - beta, weights=w)
    assert abs(float(q) - float(t)) <= float(jnp.max(jnp.diff(jnp.sort(r)))) + delta


def test_weights_equal_replication(x64):
    r = jax.random.normal(jax.random.PRNGKey(3), (200,), jnp.float64)
    counts = jax.random.randint(jax.random.PRNGKey(4), (200,), 1, 4)
    rep = jnp.repeat(r, counts)
    for side, beta in [("upper", 0.7), ("lower", 0.3)]:
        a = risk.solve_threshold(r, beta, 0.5, side, weights=counts.astype(jnp.float64))
        b = risk.solve_threshold(rep, beta, 0.5, side)
        assert float(a) == pytest.approx(float(b), rel=1e-6)


def test_jit_and_vmap():
    r = jax.random.normal(jax.random.PRNGKey(5), (4, 500))
    single = [float(risk.solve_threshold(row, 0.8, 1.0, "upper")) for row in r]
    batched = jax.jit(jax.vmap(lambda row: risk.solve_threshold(row, 0.8, 1.0, "upper")))(r)
    np.testing.assert_allclose(batched, single, rtol=1e-5)
    left = jax.jit(jax.vmap(lambda row: risk.solve_threshold(row, 0.2, 1.0, "lower")))(r)
    np.testing.assert_allclose(left, [float(risk.solve_threshold(row, 0.2, 1.0, "lower")) for row in r])
    # no gradient flows through the threshold
    g = jax.grad(lambda r: risk.solve_threshold(r, 0.8, 1.0, "upper"))(r[0])
    assert float(jnp.max(jnp.abs(g))) == 0.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(quantile_level=1.0, temperature=1.0, side="upper"), "quantile_level"),
        (dict(quantile_level=0.5, temperature=0.0, side="upper"), "temperature"),
        (dict(quantile_level=0.5, temperature=1.0, side="right"), "side"),
        (dict(quantile_level=0.5, temperature=1.0, side="upper", weights=-jnp.ones(10)), "weights"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        risk.solve_threshold(jnp.arange(10.0), **kwargs)
    if "weights" not in kwargs:
        with pytest.raises(ValueError, match=match):
            risk.threshold_objective(0.0, jnp.arange(10.0), **kwargs)


def test_max_iter_below_one_is_rejected():
    for max_iter in (0, -1):
        with pytest.raises(ValueError, match="max_iter"):
            risk.solve_threshold(jnp.arange(10.0), 0.5, 1.0, max_iter=max_iter)


def test_rewards_shape_errors():
    with pytest.raises(ValueError, match="rewards"):
        risk.solve_threshold(jnp.zeros((0,)), 0.5, 1.0)
    with pytest.raises(ValueError, match="rewards"):
        risk.solve_threshold(jnp.zeros((2, 3)), 0.5, 1.0)


def test_tail_prob_of_quantile_level_is_an_involution():
    assert risk.tail_prob_of_quantile_level(0.8, "upper") == pytest.approx(0.2)
    assert risk.tail_prob_of_quantile_level(0.2, "lower") == pytest.approx(0.2)
    for side in ("upper", "lower"):
        q = 0.37
        assert risk.tail_prob_of_quantile_level(risk.tail_prob_of_quantile_level(q, side), side) == pytest.approx(q)
    with pytest.raises(ValueError, match="side"):
        risk.tail_prob_of_quantile_level(0.5, "right")

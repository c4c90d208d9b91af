import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.scipy.special import logsumexp

from tailjax.flows.fdc import fdc_fine_tune, fdc_grid, fdc_operator, grid_distances
from tailjax.flows.gaussian import gaussian_velocity


def _setup(n=61, linear=False):
    """TFFT App. C.2: prior N(0, I_2), r(x) = exp(-|x - (2, 2)|^2 / (2 0.8^2)), grid on [-4, 4]^2
    (or r = x1 + x2 with ``linear``)."""
    g = jnp.linspace(-4.0, 4.0, n)
    pts = jnp.stack(jnp.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    log_pre = -0.5 * jnp.sum(pts**2, -1)
    r = jnp.sum(pts, -1) if linear else jnp.exp(-0.5 * jnp.sum((pts - 2.0) ** 2, -1) / 0.8**2)
    return log_pre - logsumexp(log_pre), r


@pytest.mark.parametrize("side,beta,linear", [("upper", 0.9, False), ("lower", 0.2, True)])
def test_fixed_point_is_the_tfft_target(side, beta, linear, x64):
    """Proposition 5.2: t* is a beta-quantile of p*, and the operator at t* maps p* to itself
    for every eta >= alpha."""
    log_pre, r = _setup(n=65, linear=linear)  # step 1/8: sums of grid points are exact (true ties)
    res = jax.jit(lambda lp, rr: fdc_grid(lp, rr, quantile_level=beta, temperature=1.0, num_iterations=1,
                                          side=side))(log_pre, r)
    star, t = res.log_p_star, res.t_star
    p = jnp.exp(star)
    below, at_or_below = float(jnp.sum(jnp.where(r < t, p, 0.0))), float(jnp.sum(jnp.where(r <= t, p, 0.0)))
    assert below - 1e-5 <= beta <= at_or_below + 1e-5
    step = jax.jit(lambda lp, eta: fdc_operator(lp, log_pre, r, t, eta, quantile_level=beta, temperature=1.0,
                                                side=side))
    for eta in (1.0, 1.5, 10.0):
        np.testing.assert_allclose(step(star, eta), star, atol=1e-9)
    # Anywhere else the operator moves.
    assert float(jnp.max(jnp.abs(step(log_pre, 2.0) - log_pre))) > 0.1


def test_converges_from_the_prior(x64):
    log_pre, r = _setup(41)
    res = jax.jit(lambda lp, rr: fdc_grid(lp, rr, quantile_level=0.9, temperature=1.0, num_iterations=40))(log_pre, r)
    kl = np.asarray(res.distances.kl)
    assert kl[-1] < 1e-2 * kl[0]
    assert np.asarray(res.distances.tv)[-1] < 0.03
    assert abs(float(res.thresholds[-1]) - float(res.t_star)) < 0.1


def test_fdc_grid_stays_finite_with_zero_prior_cells(x64):
    """Issue 13: cells of zero prior probability (-inf log-probabilities) keep zero probability,
    where the first step (eta_0 = alpha, weight 0 on log p) used to give 0 * -inf = NaN."""
    log_pre, r = _setup(41)
    log_pre = jnp.where(jnp.arange(log_pre.shape[0]) % 7 == 0, -jnp.inf, log_pre)
    res = jax.jit(lambda lp, rr: fdc_grid(lp, rr, quantile_level=0.9, temperature=1.0, num_iterations=20))(log_pre, r)
    zero = ~jnp.isfinite(log_pre)
    assert not np.any(np.isnan(np.asarray(res.log_p)))
    assert np.all(np.asarray(res.log_p)[:, zero] == -np.inf) and np.all(np.isfinite(np.asarray(res.log_p)[:, ~zero]))
    assert np.all(np.isfinite(np.asarray(res.thresholds))) and np.isfinite(float(res.t_star))
    assert np.asarray(res.distances.kl)[-1] < 0.1 * np.asarray(res.distances.kl)[0]


def test_grid_distances_properties(x64):
    p = jax.nn.log_softmax(jax.random.normal(jax.random.key(0), (50,)))
    q = jax.nn.log_softmax(jax.random.normal(jax.random.key(1), (50,)))
    d = grid_distances(p, q)
    np.testing.assert_allclose(grid_distances(p, p), 0.0, atol=1e-12)
    np.testing.assert_allclose(d.js, grid_distances(q, p).js, rtol=1e-12)
    assert 0 < d.js <= np.log(2) and 0 < d.tv <= 1 and d.kl > 0
    # Pinsker: TV <= sqrt(KL / 2).
    assert d.tv <= np.sqrt(d.kl / 2)


def test_bad_input():
    log_pre, r = _setup(5)
    with pytest.raises(ValueError, match="quantile_level"):
        fdc_grid(log_pre, r, quantile_level=1.5, temperature=1.0)
    with pytest.raises(ValueError, match="temperature"):
        fdc_grid(log_pre, r, quantile_level=0.5, temperature=0.0)
    with pytest.raises(ValueError, match="side"):
        fdc_grid(log_pre, r, quantile_level=0.5, temperature=1.0, side="right")
    with pytest.raises(ValueError, match="eta"):
        fdc_grid(log_pre, r, quantile_level=0.5, temperature=1.0, num_iterations=2, eta=jnp.array([0.5, 2.0]))
    with pytest.raises(ValueError, match="shape"):
        fdc_grid(log_pre, r[:-1], quantile_level=0.5, temperature=1.0)


def test_model_level_rounds(tmp_path, optax_promotion):
    mu, cov = np.zeros(2), np.eye(2)
    field = lambda p, x, t: gaussian_velocity(x, t, p, cov)
    run = lambda **kw: fdc_fine_tune(jax.random.key(0), field, jnp.asarray(mu, jnp.float32), lambda x: x[0] + x[1],
                                     2, quantile_level=0.5, temperature=1.0, num_rounds=2, steps_per_round=8,
                                     num_var_samples=300, optimizer=optax.adam(0.05), grid_steps=6, batch_size=32,
                                     progress=False, **kw)
    res = run(checkpoint_dir=tmp_path)
    assert res.thresholds.shape == (2,) and len(res.fits) == 2
    assert res.fits[0].history["loss"].shape == (8,)
    # Round 2's VaR is measured on the tuned model, further right than the prior's median 0.
    assert float(res.thresholds[1]) > float(res.thresholds[0])
    # One checkpoint per round; a rerun resumes from them and returns the same result.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["round_01.ckpt", "round_02.ckpt"]
    again = run(checkpoint_dir=tmp_path)
    np.testing.assert_array_equal(again.params, res.params)
    np.testing.assert_array_equal(again.fits[1].history["loss"], res.fits[1].history["loss"])

"""SAA / IS estimators: closed forms, log-space robustness, unbiasedness z-tests."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from tailjax.importance import (
    gaussian,
    gaussian_tilting_scheme,
    is_objective,
    is_objective_from_losses,
    is_tail_expectation,
    is_tail_probability,
    is_var_cvar,
    log_second_moment,
    plain_scheme,
    saa_objective,
    sample_losses,
    self_structuring_sample,
)
from tailjax.risk import cvar, ru_objective


def _linear_loss(x, theta):
    return jnp.dot(theta, x)


def test_saa_objective_is_ru_objective_and_min_is_cvar(x64):
    key = jax.random.PRNGKey(0)
    x = jax.random.normal(key, (500, 3), jnp.float64)
    theta = jnp.array([0.2, 0.5, 0.3])
    losses = sample_losses(_linear_loss, x, theta)
    u = jnp.asarray(1.1)
    np.testing.assert_allclose(saa_objective(u, theta, _linear_loss, x, 0.05), ru_objective(u, losses, 0.05))
    v, c = is_var_cvar(losses, None, 0.05)
    np.testing.assert_allclose(c, cvar(losses, 0.05), rtol=1e-12)
    grid = jnp.linspace(-1, 3, 401)
    vals = jax.vmap(lambda uu: saa_objective(uu, theta, _linear_loss, x, 0.05))(grid)
    assert float(jnp.min(vals)) >= float(c) - 1e-12
    np.testing.assert_allclose(saa_objective(v, theta, _linear_loss, x, 0.05), c, rtol=1e-12)


def test_is_var_cvar_minimises_is_objective(x64):
    key = jax.random.PRNGKey(1)
    k1, k2 = jax.random.split(key)
    losses = jax.random.normal(k1, (300,), jnp.float64)
    log_lr = 0.5 * jax.random.normal(k2, (300,), jnp.float64) - 0.1
    var_cvar_ = jax.jit(lambda l, w: is_var_cvar(l, w, 0.1))
    objective = jax.jit(lambda u, l, w: is_objective_from_losses(u, l, w, 0.1))
    v, c = var_cvar_(losses, log_lr)
    np.testing.assert_allclose(objective(v, losses, log_lr), c, rtol=1e-10)
    grid = jnp.linspace(-2, 3, 201)
    vals = objective(grid, jnp.broadcast_to(losses, (201, 300)), jnp.broadcast_to(log_lr, (201, 300)))
    assert float(jnp.min(vals)) >= float(c) - 1e-10
    # batched (leading axes) version agrees with the single one
    vb, cb = var_cvar_(jnp.stack([losses, -losses]), jnp.stack([log_lr, log_lr]))
    np.testing.assert_allclose(cb[0], c, rtol=1e-12)
    np.testing.assert_allclose(cb[1], var_cvar_(-losses, log_lr)[1], rtol=1e-12)


def test_log_space_weights_do_not_overflow(dtype):
    losses = jnp.array([0.0, 1.0, 2.0, 3.0], dtype)
    base = jnp.array([-0.3, 0.1, 0.2, -0.05], dtype)
    for shift in (800.0, -800.0):
        log_lr = base + jnp.asarray(shift, dtype)
        val = is_objective_from_losses(jnp.asarray(1.5, dtype) , losses, log_lr, 0.5)
        # reference: u + exp(shift) * sum(excess * exp(base)) / (n beta), in float64 logs
        ref_log = np.log(np.sum(np.maximum(np.asarray(losses, np.float64) - 1.5, 0) * np.exp(np.asarray(base, np.float64)))) + shift - np.log(4 * 0.5)
        if shift < 0:
            np.testing.assert_allclose(float(val), 1.5, rtol=1e-6)
        else:
            assert np.isinf(float(val)) or np.isclose(np.log(float(val) - 1.5), ref_log, rtol=1e-5)
        m2 = log_second_moment(losses, log_lr, jnp.asarray(1.5, dtype))
        ref = np.log(np.mean(np.maximum(np.asarray(losses, np.float64) - 1.5, 0) ** 2 * np.exp(2 * np.asarray(base, np.float64)))) + 2 * shift
        np.testing.assert_allclose(float(m2), ref, rtol=1e-5)
    # tiny ratios (total weight < n beta): alpha is clipped to 1, the IS-weighted mean
    c1 = is_var_cvar(losses, base, 0.5)[1]
    c2 = is_var_cvar(losses, base + jnp.asarray(-700.0, dtype), 0.5)[1]
    assert np.isfinite(float(c1))
    p = np.exp(np.asarray(base, np.float64))
    assert float(c2) == pytest.approx(float(p @ np.asarray(losses, np.float64) / p.sum()), rel=1e-5)


def test_is_var_cvar_with_one_huge_likelihood_ratio_float32_matches_float64():
    # one log-ratio of +120 (e^120 > float32 max): the tail mass n beta / W underflowed to 0,
    # so the eager call raised "tail_prob must lie in (0, 1]" and the jitted one gave NaN
    rng = np.random.default_rng(0)
    losses = rng.normal(size=200)
    log_lr = 0.3 * rng.normal(size=200)
    j = int(np.argsort(losses)[-5])  # the 5th largest loss carries the huge ratio
    log_lr[j] = 120.0
    with jax.enable_x64(True):
        ref = [float(v) for v in is_var_cvar(jnp.asarray(losses), jnp.asarray(log_lr), 0.05)]
    # the tail ends at the heavy atom: the four larger losses and the rest of the unit mass on it
    q_above = np.exp(log_lr[losses > losses[j]]) / (200 * 0.05)
    expected = q_above @ losses[losses > losses[j]] + (1 - q_above.sum()) * losses[j]
    assert ref[0] == pytest.approx(losses[j]) and ref[1] == pytest.approx(expected)
    l32, r32 = jnp.asarray(losses, jnp.float32), jnp.asarray(log_lr, jnp.float32)
    for f in (is_var_cvar, jax.jit(is_var_cvar, static_argnums=2)):
        v, c = f(l32, r32, 0.05)
        np.testing.assert_allclose([float(v), float(c)], ref, rtol=1e-6)
    # gradients stay finite
    g = jax.grad(lambda l: is_var_cvar(l, r32, 0.05)[1])(l32)
    assert np.all(np.isfinite(np.asarray(g)))


def test_is_var_cvar_nan_inputs_give_nan():
    losses = jnp.array([0.0, 1.0, 2.0, 3.0])
    v, c = is_var_cvar(losses, jnp.array([0.0, jnp.nan, 0.0, 0.0]), 0.25)
    assert np.isnan(float(v)) and np.isnan(float(c))
    # -inf log-ratios are zero weights
    v, c = is_var_cvar(losses, jnp.array([0.0, 0.0, 0.0, -jnp.inf]), 0.25)
    assert float(c) == pytest.approx(2.0)


def test_estimators_jit_and_vmap_over_decisions():
    key = jax.random.PRNGKey(3)
    x = jax.random.normal(key, (256, 2))
    log_lr = jnp.zeros(256)
    thetas = jnp.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    us = jnp.array([0.5, 1.0, 1.5])
    f = jax.jit(jax.vmap(lambda u, th: is_objective(u, th, _linear_loss, x, log_lr, 0.1)))
    g = jax.vmap(lambda u, th: saa_objective(u, th, _linear_loss, x, 0.1))
    np.testing.assert_allclose(f(us, thetas), g(us, thetas), rtol=1e-6)
    te = jax.jit(is_tail_expectation)(sample_losses(_linear_loss, x, thetas[1]), log_lr, jnp.asarray(1.0))
    assert te.shape == ()


def test_is_objective_gradient_is_finite_without_tail_hits(x64):
    losses = jnp.array([0.1, -0.4, 0.3])
    log_lr = jnp.array([0.2, -1.0, 0.5])
    f = jax.jit(jax.value_and_grad(is_objective_from_losses, argnums=(0, 1, 2)), static_argnums=3)
    value, (g_u, g_l, g_lr) = f(jnp.asarray(2.0), losses, log_lr, 0.1)  # no loss above u
    assert float(value) == 2.0 and float(g_u) == 1.0
    np.testing.assert_array_equal(g_l, 0.0)
    np.testing.assert_array_equal(g_lr, 0.0)
    # with hits: d/du = 1 - sum_{l_i > u} L_i / (n beta), d/dl_i = L_i 1{l_i > u} / (n beta)
    value, (g_u, g_l, _) = f(jnp.asarray(0.0), losses, log_lr, 0.1)
    w = np.exp(np.asarray(log_lr)) * (np.asarray(losses) > 0) / 0.3
    assert float(g_u) == pytest.approx(1.0 - w.sum(), rel=1e-12)
    np.testing.assert_allclose(g_l, w, rtol=1e-12)


@pytest.mark.parametrize("tail_prob", [1e-3, 0.004, 0.01, 0.0123])
def test_top_k_var_cvar_equals_the_full_sort(tail_prob, x64):
    losses = jax.random.normal(jax.random.PRNGKey(4), (5, 1000), jnp.float64)
    v, c = is_var_cvar(losses, None, tail_prob, max_tail_prob=0.02)
    rv, rc = is_var_cvar(losses, None, tail_prob)
    np.testing.assert_array_equal(v, rv)
    np.testing.assert_allclose(c, rc, rtol=1e-13)
    # tail_prob traced (one program for every level), vmapped over replications
    f = jax.jit(jax.vmap(lambda l, p: is_var_cvar(l, None, p, max_tail_prob=0.02)[1], in_axes=(0, None)))
    np.testing.assert_allclose(f(losses, jnp.asarray(tail_prob)), rc, rtol=1e-13)
    g = jax.grad(lambda l: is_var_cvar(l, None, tail_prob, max_tail_prob=0.02)[1])(losses[0])
    np.testing.assert_allclose(g, jax.grad(lambda l: cvar(l, tail_prob))(losses[0]), atol=1e-14)


def test_bad_input_raises():
    losses = jnp.zeros(4)
    with pytest.raises(ValueError, match="max_tail_prob"):
        is_var_cvar(losses, None, 0.5, max_tail_prob=0.25)
    with pytest.raises(ValueError, match="max_tail_prob"):
        is_var_cvar(losses, losses, 0.1, max_tail_prob=0.25)
    with pytest.raises(ValueError, match="max_tail_prob"):
        is_var_cvar(losses, None, 0.1, max_tail_prob=1.0)
    with pytest.raises(ValueError, match="tail_prob"):
        is_objective_from_losses(0.0, losses, losses, 1.5)
    with pytest.raises(ValueError, match="tail_prob"):
        is_var_cvar(losses, None, 0.0)
    with pytest.raises(ValueError, match="log_lr"):
        is_tail_expectation(losses, jnp.zeros(3), 0.0)
    with pytest.raises(ValueError, match="losses"):
        is_tail_probability(jnp.zeros((0,)), jnp.zeros((0,)), 0.0)


# ---------------------------------------------------------------- unbiasedness z-tests

def _z_score(estimates, exact):
    est = np.asarray(estimates, np.float64)
    return (est.mean() - exact) / (est.std(ddof=1) / np.sqrt(est.size))


def _gaussian_tail(g, u):
    """E (g^T X - u)_+ and P(g^T X > u) for X ~ N(0, I)."""
    s = float(np.linalg.norm(g))
    a = u / s
    return s * (stats.norm.pdf(a) - a * stats.norm.sf(a)), stats.norm.sf(a)


@pytest.mark.parametrize("method", ["saa", "tilting", "self_structuring"])
def test_gaussian_is_unbiased(method, x64):
    d, n, reps = 3, 512, 400
    g = jnp.array([0.6, -0.3, 0.9])
    u = 3.0 * float(jnp.linalg.norm(g))  # P ~ 1.3e-3
    exact_te, exact_tp = _gaussian_tail(np.asarray(g), u)
    dist = gaussian(jnp.zeros(d))
    loss = lambda x, theta: jnp.dot(theta, x)  # noqa: E731
    if method == "saa":
        scheme = plain_scheme(dist)
        params = scheme.choose(None, u, g)
        draw = lambda k: scheme.sample(k, params, n)  # noqa: E731
    elif method == "tilting":
        scheme = gaussian_tilting_scheme(jnp.zeros(d), jnp.eye(d), lambda th: (th[None, :], jnp.zeros(1)))
        params = scheme.choose(None, jnp.asarray(u), g)
        draw = lambda k: scheme.sample(k, params, n)  # noqa: E731
    else:
        draw = lambda k: self_structuring_sample(k, dist, n, 1.0, 1e-3)  # noqa: E731

    def one(k):
        z, log_lr = draw(k)
        losses = sample_losses(loss, z, g)
        return is_tail_expectation(losses, log_lr, u), is_tail_probability(losses, log_lr, u)

    te, tp = jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(11), reps))
    assert abs(_z_score(te, exact_te)) < 4
    assert abs(_z_score(tp, exact_tp)) < 4
    if method != "saa":  # IS must also reduce the variance markedly
        assert np.std(np.asarray(tp)) < 0.5 * np.sqrt(exact_tp * (1 - exact_tp) / n)

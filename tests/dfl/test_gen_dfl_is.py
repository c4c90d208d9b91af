"""Importance-sampled generate-then-optimize: the tail shift, the exact log-weights, variance
reduction of the tail estimate, and the decision under jit/vmap/grad."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.scipy.stats import norm

from tailjax.dfl import GenDFLConfig, Proxy, gen_dfl, is_decision, is_samples, make_problem, tail_shift
from tailjax.dfl.gen_dfl_is import check_num_samples
from tailjax.layers import make_polytope
from tailjax.nn import ConditionalFlow
from tailjax.risk import cvar


def test_tail_shift_closed_form():
    np.testing.assert_allclose(tail_shift(0.5), math.sqrt(2 / math.pi), rtol=1e-5)
    a = 0.05
    np.testing.assert_allclose(tail_shift(a), norm.pdf(norm.ppf(1 - a)) / a, rtol=1e-5)
    assert float(tail_shift(1.0)) == 0.0
    with pytest.raises(ValueError, match="tail_prob"):
        tail_shift(0.0)
    with pytest.raises(ValueError, match="pilot_samples"):
        check_num_samples(0, "pilot_samples")
    with pytest.raises(ValueError, match="num_samples"):
        check_num_samples(2.5)


def _line_problem():
    """d = 1, w in [0.5, 1], f(c, w) = -c w: the loss grows as c falls, whatever w."""
    poly = make_polytope(jnp.array([0.5]), jnp.array([1.0]))
    return make_problem(poly, sign=-1.0)


def _two_asset_problem():
    poly = make_polytope(jnp.zeros(2), jnp.ones(2), eq_matrix=jnp.ones((1, 2)), eq_rhs=jnp.ones(1))
    return make_problem(poly, sign=-1.0, quadratic=0.1 * jnp.eye(2))


def _perturbed(flow, key, scale=0.2):
    params = jax.jit(flow.init)(key, jnp.zeros(flow.event_dim), jnp.zeros(flow.context_dim))
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.fold_in(key, 1), len(leaves))
    return jax.tree_util.tree_unflatten(tree, [l + scale * jax.random.normal(k, l.shape) for l, k in zip(leaves, keys)])


def test_log_weights_are_the_exact_density_ratio():
    """log w = log p_theta(c|x) - log r(c|x), with r the pushed-forward latent mixture."""
    flow = ConditionalFlow(2, 1, num_layers=2, hidden_sizes=(8,))
    params = _perturbed(flow, jax.random.key(0))
    problem = _two_asset_problem()
    x = jnp.array([0.4])

    @jax.jit
    def check(key):
        c, log_w, mu = is_samples(key, flow, params, problem, x, 0.1, 9, pilot_samples=8)
        log_p = flow.apply(params, c, x, method=ConditionalFlow.log_prob)
        z, ildj = flow.apply(params, c, x, method=ConditionalFlow.inverse_and_log_det)
        log_n0 = -0.5 * jnp.sum(z**2, -1) - math.log(2 * math.pi)
        log_n1 = -0.5 * jnp.sum((z - mu) ** 2, -1) - math.log(2 * math.pi)
        log_r = jnp.logaddexp(math.log(5 / 9) + log_n0, math.log(4 / 9) + log_n1) + ildj
        return log_w, log_p - log_r, mu

    log_w, ratio, mu = check(jax.random.key(1))
    np.testing.assert_allclose(log_w, ratio, atol=2e-3)
    np.testing.assert_allclose(jnp.linalg.norm(mu), tail_shift(0.1), rtol=1e-4)


def test_traced_tail_prob_outside_the_unit_interval_makes_every_sample_nan():
    # the shift is NaN there; the unshifted half of the samples must not come back finite
    flow = ConditionalFlow(2, 1, num_layers=2, hidden_sizes=(8,))
    params = _perturbed(flow, jax.random.key(0))
    problem = _two_asset_problem()
    draw = jax.jit(lambda a: is_samples(jax.random.key(1), flow, params, problem, jnp.array([0.4]), a, 4,
                                        pilot_samples=4))
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in draw(0.1))
    for bad in (0.0, 2.0, -0.5):
        assert all(bool(jnp.all(jnp.isnan(v))) for v in draw(bad)), bad


def test_importance_sampling_reduces_tail_estimate_error():
    """CVaR of f(c, 1) = -c for c ~ N(loc, s^2): closed form vs plain and IS estimates."""
    loc, scale, tail_prob, K = 1.0, 0.5, 0.02, 64
    flow = ConditionalFlow(1, 1, num_layers=1, hidden_sizes=(4,), event_loc=(loc,), event_scale=(scale,))
    params = jax.jit(flow.init)(jax.random.key(0), jnp.zeros(1), jnp.zeros(1))
    problem = _line_problem()
    x = jnp.zeros(1)
    truth = -loc + scale * norm.pdf(norm.ppf(1 - tail_prob)) / tail_prob

    @jax.jit
    def estimates(key):
        k1, k2 = jax.random.split(key)
        c, log_w, _ = is_samples(k1, flow, params, problem, x, tail_prob, K, pilot_samples=4)
        is_est = cvar(-c[:, 0], tail_prob, weights=jnp.exp(log_w - jnp.max(log_w)))
        plain = flow.apply(params, k2, x, K, method=ConditionalFlow.sample)
        return is_est, cvar(-plain[:, 0], tail_prob)

    is_est, plain_est = jax.vmap(estimates)(jax.random.split(jax.random.key(1), 400))
    mse_is = float(jnp.mean((is_est - truth) ** 2))
    mse_plain = float(jnp.mean((plain_est - truth) ** 2))
    assert mse_is < 0.25 * mse_plain, (mse_is, mse_plain)
    # the IS estimate is centred on the truth (z-test over keys)
    se = float(jnp.std(is_est)) / math.sqrt(is_est.shape[0])
    assert abs(float(jnp.mean(is_est)) - float(truth)) < 4 * se + 0.02


def _decision_setup():
    flow = ConditionalFlow(2, 1, num_layers=1, hidden_sizes=(4,), event_loc=(0.1, 0.05), event_scale=(0.2, 0.02))
    params = jax.jit(flow.init)(jax.random.key(0), jnp.zeros(2), jnp.zeros(1))
    return flow, params, _two_asset_problem(), jnp.array([[0.0], [1.0], [-1.0]])


def test_is_decision_under_jit_and_vmap():
    flow, params, problem, xs = _decision_setup()
    keys = jax.random.split(jax.random.key(1), xs.shape[0])
    w = jax.jit(jax.vmap(lambda k, xi: is_decision(k, flow, params, problem, xi, 0.1, 16, pilot_samples=8)))(keys, xs)
    assert w.shape == (3, 2)
    np.testing.assert_allclose(jnp.sum(w, -1), 1.0, atol=1e-4)
    assert float(jnp.min(w)) > -1e-4


@pytest.mark.slow
def test_is_decision_gradient_and_training_step():
    flow, params, problem, xs = _decision_setup()

    @jax.jit
    def decisions(p, key):
        keys = jax.random.split(key, xs.shape[0])
        return jax.vmap(lambda k, xi: is_decision(k, flow, p, problem, xi, 0.1, 16, pilot_samples=8))(keys, xs)

    w = decisions(params, jax.random.key(1))
    assert w.shape == (3, 2)
    np.testing.assert_allclose(jnp.sum(w, -1), 1.0, atol=1e-4)
    grads = jax.jit(jax.grad(lambda p: jnp.sum(decisions(p, jax.random.key(1))[:, 0])))(params)
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree_util.tree_leaves(grads))
    # Gen-DFL training with the importance-sampled decision
    config = GenDFLConfig(num_samples=8, proxy_samples=8, tail_prob=0.1, importance=True, pilot_samples=4)
    kernel = gen_dfl(flow, problem, Proxy(flow, params), config, optax.adam(1e-3))
    c = jnp.array([[0.1, 0.05], [0.3, 0.06], [-0.1, 0.04]])
    _, info = jax.jit(kernel.step)(kernel.init(params), jax.random.key(2), (xs, c, w))
    assert np.isfinite(float(info.loss)) and np.isfinite(float(info.grad_norm))

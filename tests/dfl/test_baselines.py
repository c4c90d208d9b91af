"""Pred-DFL baselines: surrogate closed forms and invariants, losses under jit/vmap, the
optax kernel (cache growth), fit/resume and evaluation decisions."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tailjax.dfl.baselines import (
    METHODS,
    DFLBatch,
    baseline_decisions,
    baseline_kernel,
    contrastive_map,
    fit_baseline,
    listwise_ltr,
    make_loss,
    nce,
    pairwise_ltr,
    spo_plus,
)
from tailjax.dfl.problems import make_instance, make_problem
from tailjax.layers import make_polytope


def _simplex_problem(d=3):
    # min c^T w over the probability simplex: the oracle picks the cheapest coordinate.
    poly = make_polytope(np.zeros(d, np.float32), np.ones(d, np.float32), np.ones((1, d), np.float32), [1.0])
    problem = make_problem(poly)
    oracle = lambda c: jax.nn.one_hot(jnp.argmin(c), c.shape[0], dtype=c.dtype)  # noqa: E731
    return problem, oracle


def test_spo_plus_closed_form_and_gradient():
    problem, oracle = _simplex_problem()
    c = jnp.asarray([1.0, 2.0, 3.0])
    c_hat = jnp.asarray([2.0, 0.5, 3.0])
    w_star = oracle(c)
    # (2 c_hat - c) = [3, -1, 3]: w_tilde = e_2; SPO+ = 3 - (-1) = 4
    np.testing.assert_allclose(float(spo_plus(c_hat, c, w_star, problem, oracle)), 4.0)
    g = jax.grad(spo_plus)(c_hat, c, w_star, problem, oracle)
    np.testing.assert_allclose(g, 2 * (w_star - oracle(2 * c_hat - c)))
    np.testing.assert_allclose(float(spo_plus(c, c, w_star, problem, oracle)), 0.0)


def test_spo_plus_nonnegative_and_bounds_regret():
    problem, oracle = _simplex_problem(5)
    rng = np.random.default_rng(0)
    for _ in range(50):
        c, c_hat = jnp.asarray(rng.normal(size=5), jnp.float32), jnp.asarray(rng.normal(size=5), jnp.float32)
        w_star = oracle(c)
        loss = float(spo_plus(c_hat, c, w_star, problem, oracle))
        regret = float(c @ oracle(c_hat) - c @ w_star)
        assert loss >= -1e-6 and loss >= regret - 1e-5


def test_contrastive_and_ranking_closed_forms():
    problem, _ = _simplex_problem()
    pool = jnp.eye(3)
    c = jnp.asarray([1.0, 2.0, 3.0])
    c_hat = jnp.asarray([1.5, 1.0, 4.0])
    w_star = pool[0]
    np.testing.assert_allclose(float(nce(c_hat, w_star, pool, problem)), 1.5 - (1.5 + 1.0 + 4.0) / 3, rtol=1e-6)
    np.testing.assert_allclose(float(contrastive_map(c_hat, w_star, pool, problem)), 0.5, rtol=1e-6)
    # true order 0 < 1 < 2; predicted 1 < 0 < 2: pairs (0,1): max(0, .1 + 1.5 - 1) = .6,
    # (0,2): max(0, .1 + 1.5 - 4) = 0, (1,2): max(0, .1 + 1 - 4) = 0 -> mean .2
    np.testing.assert_allclose(float(pairwise_ltr(c_hat, c, pool, problem, 0.1)), 0.2, rtol=1e-6)
    p = jax.nn.softmax(-c)
    expected = -jnp.sum(p * jax.nn.log_softmax(-c_hat))
    np.testing.assert_allclose(float(listwise_ltr(c_hat, c, pool, problem)), float(expected), rtol=1e-6)
    assert float(listwise_ltr(c, c, pool, problem)) <= float(listwise_ltr(c_hat, c, pool, problem))


@pytest.fixture(scope="module")
def sp():
    inst = make_instance("shortest_path", num_data=48, num_features=3, deg=2, seed=0)
    inst = inst._replace(problem=inst.problem._replace(reg=jnp.asarray(0.5, jnp.float32)))
    c = jnp.asarray(inst.costs)
    return inst, jnp.asarray(inst.features, jnp.float32), c, jax.vmap(inst.oracle)(c)


@pytest.mark.parametrize(
    "method", [pytest.param(m, marks=pytest.mark.slow if m == "dfl" else ()) for m in METHODS]
)
def test_every_loss_is_finite_and_differentiable_under_jit(sp, method):
    inst, x, c, w = sp
    apply_fn = lambda p, f: f @ p["W"] + p["b"]  # noqa: E731
    params = {"W": jnp.full((3, 40), 0.01, jnp.float32), "b": jnp.ones(40, jnp.float32)}
    loss = make_loss(method, apply_fn, inst.problem, inst.oracle, num_samples=4, pool_size=8, tail_prob=0.5)
    batch = DFLBatch(x[:4], c[:4], w[:4], w)
    value, grads = jax.jit(jax.value_and_grad(loss))(params, batch, jax.random.key(0))
    assert np.isfinite(float(value))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(grads))
    if method in ("mse", "spo+", "dfl"):
        assert float(value) >= -1e-6


def test_kernel_cache_growth(sp):
    inst, x, c, w = sp
    apply_fn = lambda p, f: f @ p["W"] + p["b"]  # noqa: E731
    params = {"W": jnp.zeros((3, 40), jnp.float32), "b": jnp.ones(40, jnp.float32)}
    loss = make_loss("nce", apply_fn, inst.problem, inst.oracle, pool_size=4)
    init, step = baseline_kernel(loss, optax.sgd(0.1), apply_fn=apply_fn, oracle=inst.oracle, solve_ratio=1.0)
    state = init(params, jnp.zeros((6, 40), jnp.float32))
    state, info = jax.jit(step)(state, jax.random.key(1), DFLBatch(x[:4], c[:4], w[:4]))
    assert int(state.cache_ptr) == 4 and np.isfinite(float(info.loss))
    np.testing.assert_allclose(jnp.sum(state.cache[:4], axis=1), 8.0)  # 8-arc paths added
    np.testing.assert_allclose(state.cache[4:], 0.0)


def test_fit_resume_and_decisions(sp, tmp_path):
    inst, x, c, w = sp
    kw = dict(epochs=2, batch_size=16, learning_rate=0.05, solutions=w)
    full = fit_baseline("spo+", jax.random.key(0), inst, x, c, **kw)
    ck = tmp_path / "ck.pkl"
    fit_baseline("spo+", jax.random.key(0), inst, x, c, **{**kw, "epochs": 1}, checkpoint_path=ck)
    resumed = fit_baseline("spo+", jax.random.key(0), inst, x, c, **kw, checkpoint_path=ck)
    for a, b in zip(jax.tree_util.tree_leaves(full.state.params), jax.tree_util.tree_leaves(resumed.state.params)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert full.result.history["loss"].shape == (6,)
    dec = baseline_decisions(full, x[:5], inst)
    np.testing.assert_allclose(jnp.sum(dec, axis=1), 8.0)


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_training_reduces_regret(method):
    from tailjax.dfl.metrics import normalized_regret

    inst = make_instance("shortest_path", num_data=300, num_features=5, deg=4, seed=0)
    inst = inst._replace(problem=inst.problem._replace(reg=jnp.asarray(0.5, jnp.float32)))
    x, c = inst.features, inst.costs
    fitted = fit_baseline(method, jax.random.key(0), inst, x[:200], c[:200], epochs=10, learning_rate=0.02,
                          solve_ratio=0.1, num_samples=8)
    untrained = fit_baseline(method, jax.random.key(0), inst, x[:200], c[:200], epochs=1, learning_rate=0.0)
    r_fit = normalized_regret(baseline_decisions(fitted, x[200:], inst), c[200:], inst.problem, inst.oracle)
    r_0 = normalized_regret(baseline_decisions(untrained, x[200:], inst), c[200:], inst.problem, inst.oracle)
    assert float(r_fit) < float(r_0)


def test_bad_input(sp):
    inst, x, c, w = sp
    with pytest.raises(ValueError, match="method"):
        make_loss("blackbox", lambda p, f: f, inst.problem, inst.oracle)
    with pytest.raises(ValueError, match="tail_prob"):
        make_loss("dfl+", lambda p, f: f, inst.problem, inst.oracle, tail_prob=1.5)
    with pytest.raises(ValueError, match="solve_ratio"):
        baseline_kernel(lambda *a: 0.0, optax.sgd(0.1), solve_ratio=2.0)
    with pytest.raises(ValueError, match="batch_size"):
        fit_baseline("mse", jax.random.key(0), inst, x, c, batch_size=1000)

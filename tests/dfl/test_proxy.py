"""NLL kernel, minibatches and the frozen proxy q(c|x)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tailjax.dfl.proxy import (
    Proxy,
    build_nll_kernel,
    fit_nll,
    fit_proxy,
    init_flow,
    minibatch_fn,
    nll_init,
    nll_loss,
)
from tailjax.nn.conditional_flow import ConditionalFlow


def _data(key, n=256):
    kx, ke = jax.random.split(key)
    x = jax.random.normal(kx, (n, 2))
    c = jnp.stack([x[:, 0] + 0.1 * jax.random.normal(ke, (n,)), 3.0 - x[:, 1]], -1)
    return x, c


def test_init_flow_standardises_and_nll_matches_closed_form():
    x, c = _data(jax.random.key(0))
    flow = ConditionalFlow(2, 2, hidden_sizes=(8,))
    params = init_flow(jax.random.key(1), flow, x, c)
    loc, scale = jnp.mean(c, 0), jnp.std(c, 0)
    np.testing.assert_allclose(params["params"]["event_loc"], loc, rtol=1e-6)
    # a fresh flow is N(mean, diag(std^2)): its NLL is the Gaussian one
    z = (c - loc) / scale
    expected = jnp.mean(0.5 * jnp.sum(z**2, -1)) + math.log(2 * math.pi) + jnp.sum(jnp.log(scale))
    np.testing.assert_allclose(jax.jit(lambda p: nll_loss(flow, p, (x, c)))(params), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="x and c"):
        init_flow(jax.random.key(1), flow, x, c[0])


def test_nll_kernel_decreases_loss_under_jit():
    x, c = _data(jax.random.key(2))
    flow = ConditionalFlow(2, 2, hidden_sizes=(16,), num_layers=2)
    params = init_flow(jax.random.key(3), flow, x, c)
    opt = optax.adam(1e-2)
    step = jax.jit(build_nll_kernel(flow, opt))
    state = nll_init(params, opt)
    first = None
    for i in range(60):
        state, info = step(state, jax.random.key(i), (x, c))
        first = info.nll if first is None else first
    assert int(state.step) == 60
    assert float(info.nll) < float(first) - 0.5
    assert np.isfinite(float(info.grad_norm))


def test_minibatches_are_reproducible_permutations():
    a = jnp.arange(10)
    fn = minibatch_fn(jax.random.key(0), (a, 2 * a), 4)
    b0, b1, b2 = fn(0), fn(1), fn(2)  # 2 batches per epoch; step 2 starts epoch 1
    np.testing.assert_array_equal(b0[1], 2 * b0[0])
    assert len(set(np.asarray(b0[0])) | set(np.asarray(b1[0]))) == 8
    np.testing.assert_array_equal(fn(0)[0], b0[0])
    assert b2[0].shape == (4,)
    with pytest.raises(ValueError, match="batch_size"):
        minibatch_fn(jax.random.key(0), (a,), 0)
    with pytest.raises(ValueError, match="first axis"):
        minibatch_fn(jax.random.key(0), (a, a[:3]), 2)


def test_proxy_is_frozen_pytree_and_checkpoint_resume(tmp_path):
    x, c = _data(jax.random.key(4), 128)
    proxy = fit_proxy(jax.random.key(5), x, c, num_steps=20, batch_size=32, hidden_sizes=(8,), num_layers=2)
    assert isinstance(proxy, Proxy)

    @jax.jit
    def use(proxy, key, x):
        return proxy.sample(key, x, 3), proxy.log_prob(c[:4], x[:4])

    s, lp = use(proxy, jax.random.key(6), x[:4])
    assert s.shape == (4, 3, 2) and lp.shape == (4,)
    grads = jax.grad(lambda q: jnp.sum(q.sample(jax.random.key(0), x[:2], 2)) + jnp.sum(q.log_prob(c[:2], x[:2])))(proxy)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree_util.tree_leaves(grads.params))

    # resuming from a checkpoint reproduces the uninterrupted run
    flow = ConditionalFlow(2, 2, hidden_sizes=(8,), num_layers=2)
    path = tmp_path / "nll.pkl"
    full = fit_nll(jax.random.key(7), flow, x, c, num_steps=12, batch_size=32)
    fit_nll(jax.random.key(7), flow, x, c, num_steps=6, batch_size=32, checkpoint_path=path)
    resumed = fit_nll(jax.random.key(7), flow, x, c, num_steps=12, batch_size=32, checkpoint_path=path)
    for a, b in zip(jax.tree_util.tree_leaves(full.state.params), jax.tree_util.tree_leaves(resumed.state.params)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="x and c"):
        fit_proxy(jax.random.key(0), x, c[:5])
    assert isinstance(proxy.flow, ConditionalFlow)


def test_validation_split_selects_the_best_evaluated_parameters():
    x, c = _data(jax.random.key(7), n=64)
    flow = ConditionalFlow(2, 2, hidden_sizes=(8,), num_layers=1)
    xv, cv = _data(jax.random.key(8), n=32)
    result = fit_nll(jax.random.key(9), flow, x, c, num_steps=20, batch_size=16, learning_rate=1e-2,
                     validation=(xv, cv), eval_every=5)
    steps = [s for s, _ in result.evaluations]
    scores = [v for _, v in result.evaluations]
    assert steps == [0, 5, 10, 15, 20]
    # the returned parameters are those of the best score, and it is the validation NLL
    chosen = float(jax.jit(lambda p: nll_loss(flow, p, (xv, cv)))(result.state.params))
    np.testing.assert_allclose(chosen, min(scores), rtol=1e-5)
    assert min(scores) < scores[0]


def test_fit_selected_keeps_the_initial_parameters_when_they_score_best():
    from tailjax.dfl.proxy import fit_selected

    step = jax.jit(lambda st, k, b: (st._replace(params=st.params + 1.0, step=st.step + 1), st.params))
    state = nll_init(jnp.zeros(()), optax.sgd(1.0))
    result = fit_selected(step, state, jax.random.key(0), 6, batch_fn=lambda i: None,
                          score_fn=lambda p: float(p) ** 2, eval_every=3)
    assert float(result.state.params) == 0.0 and int(result.state.step) == 6
    assert result.evaluations == [(0, 0.0), (3, 9.0), (6, 36.0)]
    with pytest.raises(ValueError, match="eval_fn"):
        fit_selected(step, state, jax.random.key(0), 2, batch_fn=lambda i: None,
                     score_fn=lambda p: 0.0, eval_fn=lambda s: 0)

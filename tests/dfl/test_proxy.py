"""NLL loss, kernel and fit (validation selection, resume), and the frozen proxy q(c|x)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tailjax.dfl import Proxy, fit_nll, fit_proxy, init_flow, nll_kernel, nll_loss
from tailjax.nn import ConditionalFlow


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
    value, aux = jax.jit(lambda p: nll_loss(p, (x, c), jax.random.key(0), flow=flow))(params)
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    assert aux is None
    with pytest.raises(ValueError, match="x and c"):
        init_flow(jax.random.key(1), flow, x, c[0])


def test_nll_kernel_decreases_loss_under_jit():
    x, c = _data(jax.random.key(2))
    flow = ConditionalFlow(2, 2, hidden_sizes=(16,), num_layers=2)
    params = init_flow(jax.random.key(3), flow, x, c)
    kernel = nll_kernel(flow, optax.adam(1e-2))
    step = jax.jit(kernel.step)
    state = kernel.init(params)
    first = None
    for i in range(60):
        state, info = step(state, jax.random.key(i), (x, c))
        first = info.loss if first is None else first
    assert int(state.step) == 60
    assert float(info.loss) < float(first) - 0.5
    assert np.isfinite(float(info.grad_norm))


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
    path = tmp_path / "nll.ckpt"
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
    chosen = float(jax.jit(lambda p: nll_loss(p, (xv, cv), flow=flow)[0])(result.state.params))
    np.testing.assert_allclose(chosen, min(scores), rtol=1e-5)
    assert min(scores) < scores[0]


def test_validation_keeps_the_initial_parameters_when_nothing_improves_and_patience_stops():
    x, c = _data(jax.random.key(10), n=32)
    flow = ConditionalFlow(2, 2, hidden_sizes=(4,), num_layers=1)
    params = init_flow(jax.random.key(11), flow, x, c)
    result = fit_nll(jax.random.key(12), flow, x, c, num_steps=12, batch_size=8, learning_rate=0.0,
                     params=params, validation=(x, c), eval_every=2, patience=2)
    assert result.best_step == 0 and result.evaluations[0][0] == 0
    assert result.history["loss"].shape == (4,)  # checks at 2 and 4 do not improve: stop
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(result.state.params)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="validation"):
        fit_nll(jax.random.key(12), flow, x, c, num_steps=2, validation=(x, c[:3]))

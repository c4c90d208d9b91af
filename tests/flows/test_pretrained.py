"""Using pretrained models: a VP / DDPM noise-prediction network as a flow velocity (closed form
on Gaussian data), and Flax parameters loaded from a tailjax checkpoint or a msgpack file."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tailjax.flows import (
    cosine_schedule, ddpm_velocity, fit_flow_matching, gaussian_velocity, memoryless_sample,
    velocity_from_noise_prediction,
)
from tailjax.nn import VelocityField, make_schedule
from tailjax.nn.pretrained import load_params, save_params

MEAN = np.array([1.0, -2.0])
COV = np.array([[1.5, 0.4], [0.4, 0.5]])


def _gaussian_eps(x, alpha, beta):
    """E[X_0 | X_t = x] for X_t = beta X_0 + alpha X_1, X_0 ~ N(0, I), X_1 ~ N(MEAN, COV):
    beta S^{-1} (x - alpha MEAN) with S = beta^2 I + alpha^2 COV."""
    s = beta**2 * jnp.eye(2) + alpha**2 * jnp.asarray(COV)
    return beta * jnp.linalg.solve(s, x - alpha * jnp.asarray(MEAN))


def test_noise_prediction_adapter_is_the_exact_velocity(x64):
    """v = kappa x + (beta_dot - kappa beta) eps equals the closed-form velocity of Gaussian data."""
    sched = cosine_schedule()
    eps = lambda p, x, t: _gaussian_eps(x, sched.alpha(t), sched.beta(t))
    v = jax.jit(jax.vmap(lambda x, t: velocity_from_noise_prediction(eps, sched)(None, x, t)))
    xs = jax.random.normal(jax.random.key(0), (7, 2)) * 2.0
    ts = jnp.linspace(0.05, 0.95, 7)
    exact = jax.vmap(lambda x, t: gaussian_velocity(x, t, MEAN, COV, sched))(xs, ts)
    np.testing.assert_allclose(v(xs, ts), exact, rtol=1e-10, atol=1e-10)


def test_ddpm_adapter_samples_the_data_law(x64):
    """A DDPM noise network (exact for Gaussian data, in DDPM steps s = 1..T) turned into a
    velocity: its schedule is the DDPM's VP schedule and the memoryless sampler recovers the data."""
    ddpm = make_schedule(200, dtype=jnp.float64)
    log_ab = jnp.concatenate([jnp.zeros(1), jnp.log(ddpm.alpha_bars)])

    def eps_apply(params, x, s):
        ab = jnp.exp(jnp.interp(s, jnp.arange(201.0), log_ab))
        return _gaussian_eps(x, jnp.sqrt(ab), jnp.sqrt(1.0 - ab))

    field, sched = ddpm_velocity(eps_apply, ddpm.alpha_bars)
    ts = jnp.linspace(0.05, 0.95, 5)
    xs = jax.random.normal(jax.random.key(1), (5, 2))
    exact = jax.vmap(lambda x, t: gaussian_velocity(x, t, MEAN, COV, sched))(xs, ts)
    np.testing.assert_allclose(jax.vmap(lambda x, t: field(None, x, t))(xs, ts), exact, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(sched.alpha(jnp.ones(())) ** 2, 1.0)
    np.testing.assert_allclose(sched.alpha(jnp.zeros(())) ** 2, ddpm.alpha_bars[-1], rtol=1e-10)
    x = jax.jit(lambda k: memoryless_sample(k, field, None, 20_000, 2, num_steps=60, schedule=sched))(
        jax.random.key(2))
    np.testing.assert_allclose(x.mean(0), MEAN, atol=0.06)
    np.testing.assert_allclose(np.cov(np.asarray(x).T), COV, atol=0.1)


def test_load_params_from_a_checkpoint_and_from_msgpack(tmp_path, optax_promotion):
    module = VelocityField(hidden=(8,), time_embedding_dim=4)
    field = lambda p, x, t: module.apply(p, x, t)
    params = module.init(jax.random.key(0), jnp.zeros(2), 0.0)
    res = fit_flow_matching(jax.random.key(1), field, params, jax.random.normal(jax.random.key(2), (64, 2)),
                            num_steps=3, batch_size=16, progress=False, checkpoint_path=tmp_path / "fm.ckpt")
    template = jax.eval_shape(lambda: params)
    same = lambda a, b: all(np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(a),
                                                                   jax.tree_util.tree_leaves(b)))
    assert same(load_params(tmp_path / "fm.ckpt", template), res.state.params)
    save_params(tmp_path / "p.msgpack", res.state.params)
    assert same(load_params(tmp_path / "p.msgpack", template), res.state.params)
    wider = jax.eval_shape(lambda: VelocityField(hidden=(9,), time_embedding_dim=4).init(
        jax.random.key(0), jnp.zeros(2), 0.0))
    for name in ("fm.ckpt", "p.msgpack"):
        with pytest.raises(ValueError, match="shape"):
            load_params(tmp_path / name, wider)

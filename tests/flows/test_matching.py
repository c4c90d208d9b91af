import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tailjax.flows.gaussian import gaussian_velocity
from tailjax.flows.matching import fit_flow_matching, flow_matching, flow_matching_loss
from tailjax.flows.ode import ode_sample
from tailjax.nn.velocity import VelocityField, sinusoidal_embedding

MU = np.array([1.0, -0.5])
COV = np.array([[0.6, 0.25], [0.25, 0.4]])


def _data(n, key=0):
    z = jax.random.normal(jax.random.key(key), (n, 2), jnp.float32)
    return jnp.asarray(MU, jnp.float32) + z @ jnp.asarray(np.linalg.cholesky(COV).T, jnp.float32)


def test_loss_is_smallest_at_the_exact_velocity(x64):
    data = _data(4096)
    field = lambda p, x, t: gaussian_velocity(x, t, p, COV)
    loss = jax.jit(lambda m, k: flow_matching_loss(m, data.astype(jnp.float64), k, velocity_fn=field)[0])
    keys = jax.random.split(jax.random.key(1), 4)
    exact = np.mean([loss(jnp.asarray(MU), k) for k in keys])
    for shift in (np.array([0.3, 0.0]), np.array([0.0, -0.3])):
        assert np.mean([loss(jnp.asarray(MU + shift), k) for k in keys]) > exact


def test_learns_a_gaussian(optax_promotion):
    module = VelocityField(hidden=(64, 64), time_embedding_dim=16)
    field = lambda p, x, t: module.apply(p, x, t)
    params = module.init(jax.random.key(0), jnp.zeros(2), 0.0)
    kernel = flow_matching(field, optax.adam(optax.cosine_decay_schedule(3e-3, 1500)), batch_size=256)
    data = _data(20000)

    @jax.jit
    def train(state, key):
        def body(s, k):
            return kernel.step(s, k, data)
        return jax.lax.scan(body, state, jax.random.split(key, 1500))

    state, info = train(kernel.init(params), jax.random.key(1))
    assert info.loss[-100:].mean() < info.loss[:100].mean()
    x = jax.jit(lambda k: ode_sample(k, field, state.params, 20000, 2, num_steps=50))(jax.random.key(2))
    np.testing.assert_allclose(x.mean(0), MU, atol=0.06)
    np.testing.assert_allclose(np.cov(np.asarray(x).T), COV, atol=0.08)


@pytest.mark.slow
def test_fit_resumes_exactly(tmp_path, optax_promotion):
    module = VelocityField(hidden=(8,), time_embedding_dim=4)
    field = lambda p, x, t: module.apply(p, x, t)
    params = module.init(jax.random.key(0), jnp.zeros(2), 0.0)
    data = _data(64)
    straight = fit_flow_matching(jax.random.key(3), field, params, data, num_steps=6, batch_size=16, progress=False)
    ckpt = tmp_path / "fm.ckpt"
    fit_flow_matching(jax.random.key(3), field, params, data, num_steps=3, batch_size=16, progress=False,
                      checkpoint_path=ckpt, checkpoint_every=1)
    resumed = fit_flow_matching(jax.random.key(3), field, params, data, num_steps=6, batch_size=16,
                                progress=False, checkpoint_path=ckpt)
    for a, b in zip(jax.tree_util.tree_leaves(straight.state.params), jax.tree_util.tree_leaves(resumed.state.params)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    np.testing.assert_allclose(straight.history["loss"], resumed.history["loss"], rtol=1e-6)


def test_bad_input():
    field = lambda p, x, t: x
    with pytest.raises(ValueError, match="batch"):
        flow_matching_loss(None, jnp.zeros(3), jax.random.key(0), velocity_fn=field)
    with pytest.raises(ValueError, match="empty"):
        flow_matching_loss(None, jnp.zeros((0, 2)), jax.random.key(0), velocity_fn=field)
    with pytest.raises(ValueError, match="data"):
        fit_flow_matching(jax.random.key(0), field, None, jnp.zeros(3), num_steps=1)
    with pytest.raises(ValueError, match="batch_size"):
        flow_matching(field, optax.adam(1e-3), batch_size=0)


def test_fit_helper_runs(optax_promotion):
    module = VelocityField(hidden=(8,), time_embedding_dim=4)
    field = lambda p, x, t: module.apply(p, x, t)
    res = fit_flow_matching(jax.random.key(3), field, module.init(jax.random.key(0), jnp.zeros(2), 0.0), _data(64),
                            num_steps=3, batch_size=16, progress=False)
    assert res.history["loss"].shape == (3,) and int(res.state.step) == 3
    assert np.all(np.isfinite(res.history["grad_norm"]))


def test_kernel_without_batch_size_uses_the_batch_as_given(optax_promotion):
    """Without ``batch_size`` the kernel is the plain gradient kernel on the loss."""
    field = lambda p, x, t: gaussian_velocity(x, t, p, COV)
    data = _data(32)
    kernel = flow_matching(field, optax.sgd(0.1))
    state, info = jax.jit(kernel.step)(kernel.init(jnp.zeros(2)), jax.random.key(4), data)
    value, grad = jax.value_and_grad(lambda p: flow_matching_loss(p, data, jax.random.key(4), velocity_fn=field)[0])(
        jnp.zeros(2))
    np.testing.assert_allclose(info.loss, value, rtol=1e-6)
    np.testing.assert_allclose(state.params, -0.1 * grad, rtol=1e-5)
    assert int(state.step) == 1


def test_an_nnx_velocity_field_trains_through_flow_matching(optax_promotion):
    """A Flax NNX module, split by tailjax.nn.from_nnx into (apply_fn, params), pre-trains with
    fit_flow_matching and samples the data law; to_nnx puts the trained parameters back."""
    from flax import nnx

    from tailjax.nn import from_nnx, to_nnx

    class Field(nnx.Module):
        def __init__(self, rngs):
            self.inp = nnx.Linear(2 + 8, 64, rngs=rngs)
            self.out = nnx.Linear(64, 2, rngs=rngs)

        def __call__(self, x, t):
            emb = sinusoidal_embedding(jnp.broadcast_to(t, x.shape[:-1]), 8, 20.0).astype(x.dtype)
            return self.out(nnx.silu(self.inp(jnp.concatenate([x, emb], -1))))

    model = Field(nnx.Rngs(0))
    apply_fn, params = from_nnx(model)
    field = lambda p, x, t: apply_fn(p, x, t)
    res = fit_flow_matching(jax.random.key(1), field, params, _data(8192), num_steps=600, batch_size=256,
                            optimizer=optax.adam(optax.cosine_decay_schedule(1e-2, 600)), progress=False)
    assert res.history["loss"][-50:].mean() < res.history["loss"][:50].mean()
    x = jax.jit(lambda k: ode_sample(k, field, res.state.params, 8000, 2, num_steps=30))(jax.random.key(2))
    np.testing.assert_allclose(x.mean(0), MU, atol=0.1)
    trained = to_nnx(model, res.state.params)
    np.testing.assert_allclose(trained(x[:4], 0.5), field(res.state.params, x[:4], 0.5), rtol=1e-6)

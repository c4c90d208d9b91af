import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tailjax.nn.forecasters import LSTMForecaster, MLPClassifier, MLPForecaster


def test_shapes_and_batch_consistency():
    x = jax.random.normal(jax.random.key(0), (5, 12))
    for net in (LSTMForecaster(hidden=8), MLPForecaster((16,))):
        @jax.jit
        def run(x):
            params = net.init(jax.random.key(1), x[0])
            return net.apply(params, x), net.apply(params, x[2])
        out, single = run(x)
        assert out.shape == (5,)
        np.testing.assert_allclose(out[2], single, rtol=1e-5, atol=1e-6)
    multi = LSTMForecaster(hidden=8, out_dim=3, in_channels=2)
    out = jax.eval_shape(lambda: multi.apply(multi.init(jax.random.key(1), jnp.zeros((12, 2))), jnp.zeros((4, 12, 2))))
    assert out.shape == (4, 3)
    clf = MLPClassifier()
    p = jax.eval_shape(clf.init, jax.random.key(0), jnp.zeros((16, 16)))
    assert jax.eval_shape(clf.apply, p, jnp.zeros((7, 16, 16))).shape == (7, 10)
    assert p["params"]["Dense_0"]["kernel"].shape == (256, 8)  # the paper's hidden width 8


def test_lstm_uses_the_order_of_the_window():
    net = LSTMForecaster(hidden=8)
    x = jnp.arange(12.0) / 12  # same window length as above: the compiled init is reused
    params = jax.jit(net.init)(jax.random.key(1), x)
    assert not np.allclose(*jax.jit(net.apply)(params, jnp.stack([x, x[::-1]])))


@pytest.mark.slow
def test_lstm_learns_a_sine():
    t = jnp.arange(600.0)
    series = jnp.sin(2 * jnp.pi * t / 24)
    idx = jnp.arange(500)[:, None] + jnp.arange(13)[None, :]
    win = series[idx]
    x, y = win[:, :12], win[:, 12]
    net = LSTMForecaster(hidden=16)
    params = jax.jit(net.init)(jax.random.key(0), x[0])
    opt = optax.adam(1e-2)

    @jax.jit
    def train(params):
        def step(carry, _):
            p, o = carry
            loss, g = jax.value_and_grad(lambda q: jnp.mean((net.apply(q, x) - y) ** 2))(p)
            u, o = opt.update(g, o, p)
            return (optax.apply_updates(p, u), o), loss
        return jax.lax.scan(step, (params, opt.init(params)), None, length=300)

    with jax.numpy_dtype_promotion("standard"):  # optax's Adam under strict promotion
        (params, _), losses = train(params)
    assert float(losses[-1]) < 0.01 * float(jnp.var(y))


def test_stacked_lstm_shapes_batch_consistency_and_layers():
    from tailjax.nn.forecasters import StackedLSTMForecaster

    model = StackedLSTMForecaster((8, 4))
    x = jax.random.normal(jax.random.key(0), (5, 12))
    params = model.init(jax.random.key(1), x)
    cells = sorted(k for k in params["params"] if k.startswith("OptimizedLSTMCell"))
    assert cells == ["OptimizedLSTMCell_0", "OptimizedLSTMCell_1"]
    assert params["params"]["OptimizedLSTMCell_1"]["ii"]["kernel"].shape == (8, 4)  # layer 2 reads layer 1
    y = jax.jit(model.apply)(params, x)
    assert y.shape == (5,)
    np.testing.assert_allclose(y[2], model.apply(params, x[2]), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="hidden"):
        StackedLSTMForecaster(()).init(jax.random.key(1), x)

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tailjax.nn.ddpm import dm_loss, make_schedule
from tailjax.nn.unet import UNet


def _net(**kw):
    net = UNet(channels=(8, 16), time_dim=16, **kw)
    params = jax.jit(net.init)(jax.random.key(0), jnp.zeros((16, 16)), jnp.array(1), jnp.zeros(10))
    # the output layer starts at zero: perturb all weights to see the dependencies
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    params = jax.tree_util.tree_unflatten(tree, [l + 0.1 * jax.random.normal(k, l.shape) for l, k in zip(leaves, keys)])
    return net, params


@pytest.mark.slow
def test_unet_shapes_batch_and_dependencies():
    net, params = _net()
    x = jax.random.uniform(jax.random.key(2), (3, 16, 16))
    t = jnp.array([1, 50, 400])
    c = jax.nn.one_hot(jnp.array([0, 3, 9]), 10)
    @jax.jit
    def outputs(x, t, c):  # one batched call for all variants, one unbatched call
        xs = jnp.concatenate([x, x, x, x.at[:, 0, 0].add(1.0)])
        ts = jnp.concatenate([t, t + 7, t, t])
        cs = jnp.concatenate([c, c, c[::-1], c])
        out = net.apply(params, xs, ts, cs).reshape(4, 3, 16, 16)
        return out[0], net.apply(params, x[1], t[1], c[1]), out[1], out[2], out[3]

    out, single, out_t, out_c, out_corner = outputs(x, t, c)
    assert out.shape == (3, 16, 16) and np.all(np.isfinite(out))
    np.testing.assert_allclose(out[1], single, rtol=1e-4, atol=1e-4)
    assert not np.allclose(out_t, out)  # depends on t
    assert not np.allclose(out_c, out)  # depends on the label
    # the receptive field covers the image: a corner pixel moves the opposite corner
    assert float(jnp.max(jnp.abs(out_corner[:, -1, -1] - out[:, -1, -1]))) > 0


@pytest.mark.slow
def test_unet_trains_with_dm_loss_and_rejects_bad_sizes():
    net, params = _net()
    s = make_schedule(100)
    apply = lambda p, x, t, c: net.apply(p, x, t, c)
    x0 = jax.random.uniform(jax.random.key(3), (4, 16, 16))
    cond = jax.nn.one_hot(jnp.arange(4), 10)
    val, g = jax.jit(jax.value_and_grad(
        lambda p: dm_loss(p, (x0, cond), jax.random.key(4), apply_fn=apply, schedule=s)[0]))(params)
    assert np.isfinite(float(val))
    assert all(np.all(np.isfinite(l)) for l in jax.tree_util.tree_leaves(g))
    with pytest.raises(ValueError, match="divisible"):
        net.apply(params, jnp.zeros((9, 9)), jnp.array(1), jnp.zeros(10))


def test_unet_shapes_and_validation_without_compiling():
    net = UNet(channels=(8, 16), time_dim=16)
    params = jax.eval_shape(net.init, jax.random.key(0), jnp.zeros((16, 16)), jnp.array(1), jnp.zeros(10))
    out = jax.eval_shape(net.apply, params, jnp.zeros((5, 16, 16)), jnp.zeros(5, jnp.int32), jnp.zeros((5, 10)))
    assert out.shape == (5, 16, 16)
    multi = UNet(channels=(8, 16, 16), time_dim=16, in_channels=3)
    p3 = jax.eval_shape(multi.init, jax.random.key(0), jnp.zeros((16, 16, 3)), jnp.array(1))
    assert jax.eval_shape(multi.apply, p3, jnp.zeros((2, 16, 16, 3)), jnp.zeros(2, jnp.int32)).shape == (2, 16, 16, 3)
    with pytest.raises(ValueError, match="divisible"):
        jax.eval_shape(net.init, jax.random.key(0), jnp.zeros((9, 9)), jnp.array(1), jnp.zeros(10))


def test_unet_as_a_class_conditional_velocity_field_without_compiling():
    """time_scale and num_classes make the UNet a velocity field v(x, t, c) on (8, 8, 1) images with
    t in [0, 1] and integer labels; an adjoint-matching step on image events traces (shapes only)."""
    import optax

    from tailjax.flows import adjoint_matching

    net = UNet(channels=(8, 16), time_dim=16, in_channels=1, time_scale=1000.0, num_classes=10)
    shapes = jax.eval_shape(net.init, jax.random.key(0), jnp.zeros((8, 8, 1)), jnp.zeros(()), jnp.zeros((), jnp.int32))
    params = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)  # the base closes over arrays
    field = lambda p, x, t, c: net.apply(p, x, t, c)
    out = jax.eval_shape(jax.vmap(field, in_axes=(None, 0, 0, 0)), params, jnp.zeros((3, 8, 8, 1)), jnp.zeros(3),
                         jnp.zeros(3, jnp.int32))
    assert out.shape == (3, 8, 8, 1)
    base = lambda x, t, c: field(params, x, t, c)
    reward = lambda x, _, c: jnp.where(c == 3, jnp.sum(x), -jnp.sum(x))
    kernel = adjoint_matching(field, base, reward, optax.adam(1e-3), (8, 8, 1), batch_size=4, num_steps=4,
                              contexts=jnp.arange(10), remat=True)
    state = jax.eval_shape(kernel.init, params)
    new, info = jax.eval_shape(kernel.step, state, jax.random.key(1))
    assert info.loss.shape == () and jax.tree_util.tree_structure(new.params) == jax.tree_util.tree_structure(params)

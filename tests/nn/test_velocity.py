import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tailjax.nn.velocity import VelocityField, sinusoidal_embedding


def test_embedding_shape_and_unit_circle():
    t = jnp.linspace(0.0, 1.0, 7)
    emb = sinusoidal_embedding(t, 16, max_frequency=50.0)
    assert emb.shape == (7, 16)
    # Each (sin, cos) pair lies on the unit circle.
    np.testing.assert_allclose(emb[:, :8] ** 2 + emb[:, 8:] ** 2, 1.0, rtol=1e-6)
    # The lowest frequency is 1 and the highest is max_frequency.
    np.testing.assert_allclose(emb[:, 0], jnp.sin(t), rtol=1e-6)
    np.testing.assert_allclose(emb[:, 7], jnp.sin(50.0 * t), atol=1e-4)


def test_embedding_scalar_and_jit():
    emb = jax.jit(lambda t: sinusoidal_embedding(t, 8))(jnp.asarray(0.3))
    assert emb.shape == (8,)


@pytest.mark.parametrize("dim", [0, 3])
def test_embedding_bad_dim(dim):
    with pytest.raises(ValueError, match="dim"):
        sinusoidal_embedding(jnp.asarray(0.1), dim)


@pytest.mark.parametrize("d", [1, 2, 64])
def test_velocity_field_shapes_batched_and_single(d):
    module = VelocityField(hidden=(16, 16), time_embedding_dim=8)
    params = module.init(jax.random.key(0), jnp.zeros(d), 0.0)
    x = jax.random.normal(jax.random.key(1), (5, d))
    t = jnp.linspace(0.0, 1.0, 5)
    batched = jax.jit(module.apply)(params, x, t)
    single = jax.jit(jax.vmap(module.apply, in_axes=(None, 0, 0)))(params, x, t)
    assert batched.shape == (5, d)
    np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-6)
    # A scalar t broadcasts over the batch.
    apply = jax.jit(module.apply)
    np.testing.assert_allclose(apply(params, x, 0.5), apply(params, x, jnp.full((5,), 0.5)), rtol=1e-6)


def test_velocity_field_context_and_zero_init():
    module = VelocityField(hidden=(8,), time_embedding_dim=4, zero_init_output=True)
    params = module.init(jax.random.key(0), jnp.zeros(3), 0.0, jnp.zeros(2))
    out = module.apply(params, jnp.ones((4, 3)), 0.2, jnp.ones(2))
    assert out.shape == (4, 3)
    np.testing.assert_array_equal(out, 0.0)


def test_velocity_field_depends_on_time():
    module = VelocityField(hidden=(16,), time_embedding_dim=8)
    params = module.init(jax.random.key(0), jnp.zeros(2), 0.0)
    x = jnp.ones(2)
    assert not np.allclose(module.apply(params, x, 0.1), module.apply(params, x, 0.9))


def test_velocity_field_rejects_scalar_x():
    module = VelocityField(hidden=(4,), time_embedding_dim=4)
    with pytest.raises(ValueError, match="x"):
        module.init(jax.random.key(0), jnp.asarray(1.0), 0.0)


def test_linear_skip_starts_as_the_mlp_and_is_affine_in_x():
    plain = VelocityField(hidden=(16,), time_embedding_dim=8)
    skip = VelocityField(hidden=(16,), time_embedding_dim=8, linear_skip=True)
    params = skip.init(jax.random.key(0), jnp.zeros(3), 0.0)
    x = jax.random.normal(jax.random.key(1), (4, 3))
    mlp_params = {"params": {k: v for k, v in params["params"].items() if k != "skip"}}
    # The skip is zero at initialisation.
    np.testing.assert_allclose(jax.jit(skip.apply)(params, x, 0.3), jax.jit(plain.apply)(mlp_params, x, 0.3), rtol=1e-6)
    # With the MLP's output layer zeroed, the field is exactly A(t) x + b(t).
    last = max(k for k in params["params"] if k.startswith("Dense_"))
    params = jax.tree_util.tree_map(lambda a: a, params)
    params["params"][last] = jax.tree_util.tree_map(jnp.zeros_like, params["params"][last])
    params["params"]["skip"]["kernel"] = jax.random.normal(jax.random.key(2), params["params"]["skip"]["kernel"].shape)
    f = jax.jit(lambda z: skip.apply(params, z, 0.3))
    jac = jax.jit(jax.jacfwd(f))
    np.testing.assert_allclose(jac(x[1]), jac(x[0]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(f(x[0] + x[1]) - f(x[1]), jac(x[0]) @ x[0], rtol=1e-4, atol=1e-5)

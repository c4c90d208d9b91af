"""Linear and MLP point predictors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tailjax.nn.predictors import LinearPredictor, LogLinkPredictor, MLPPredictor, init_predictor, make_predictor


def test_linear_predictor_is_affine():
    m = LinearPredictor(4)
    params = init_predictor(m, jax.random.key(0), 3)
    x = jax.random.normal(jax.random.key(1), (5, 3))
    y = jax.jit(m.apply)(params, x)
    assert y.shape == (5, 4)
    J = jax.jacobian(lambda v: m.apply(params, v))(x[0])
    np.testing.assert_allclose(J, params["params"]["linear"]["kernel"].T, rtol=1e-6)


def test_mlp_shapes_vmap_and_grad():
    m = MLPPredictor(6, (8, 8))
    params = init_predictor(m, jax.random.key(0), 3)
    x = jax.random.normal(jax.random.key(1), (7, 3))
    y = m.apply(params, x)
    np.testing.assert_allclose(y[2], m.apply(params, x[2]), rtol=1e-5, atol=1e-6)
    g = jax.grad(lambda p: jnp.sum(m.apply(p, x) ** 2))(params)
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in jax.tree_util.tree_leaves(g))


def test_log_link_is_the_exponential_of_its_inner_predictor():
    inner = LinearPredictor(4)
    params = init_predictor(LogLinkPredictor(inner), jax.random.key(0), 3)
    x = jax.random.normal(jax.random.key(1), (5, 3))
    y = jax.jit(LogLinkPredictor(inner).apply)(params, x)
    np.testing.assert_allclose(y, jnp.exp(inner.apply({"params": params["params"]["inner"]}, x)), rtol=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match="kind"):
        make_predictor("cnn", 3)
    with pytest.raises(ValueError, match="out_dim"):
        init_predictor(LinearPredictor(0), jax.random.key(0), 3)
    with pytest.raises(ValueError, match="hidden"):
        init_predictor(MLPPredictor(2, (0,)), jax.random.key(0), 3)
    with pytest.raises(TypeError, match="inner"):
        init_predictor(LogLinkPredictor(lambda x: x), jax.random.key(0), 3)

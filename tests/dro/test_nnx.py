"""A Flax NNX predictor trains through a DRO loss via ``tailjax.nn.from_nnx``."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from tailjax.dro import kl_dro_loss, kl_dro_params
from tailjax.nn import from_nnx, to_nnx
from tailjax.training import fit, gradient_kernel, minibatches


class _Linear(nnx.Module):
    def __init__(self, rngs):
        self.dense = nnx.Linear(2, 1, rngs=rngs)

    def __call__(self, x):
        return self.dense(x)[..., 0]


def test_nnx_predictor_trains_through_the_kl_dro_loss():
    model = _Linear(nnx.Rngs(0))
    apply_fn, params = from_nnx(model)
    x = jax.random.normal(jax.random.key(1), (128, 2))
    y = x @ jnp.array([1.5, -0.5]) + 0.3
    f = lambda w, s: (apply_fn(w, s[0]) - s[1]) ** 2  # noqa: E731  the paper's f(w, x)
    loss = functools.partial(kl_dro_loss, loss_fn=f, radius=0.05)
    kernel = gradient_kernel(loss, optax.adam(5e-2))
    state = kernel.init(kl_dro_params(params, lam=1.0))
    res = fit(kernel, state, jax.random.key(2), 300, batches=minibatches(jax.random.key(3), (x, y), 32),
              progress=False)
    assert res.history["loss"][-20:].mean() < 0.1 * res.history["loss"][:5].mean()
    trained = to_nnx(model, res.state.params[0])
    np.testing.assert_allclose(trained(x[:4]), y[:4], atol=0.1)
    np.testing.assert_allclose(trained.dense.kernel[...][:, 0], [1.5, -0.5], atol=0.1)

"""Run by test_scale.py in a subprocess with 4 forced CPU devices: the adjoint-matching step
sharded over the batch equals the one-device step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from tailjax.flows import adjoint_matching
from tailjax.nn import VelocityField


def run(mesh, contexts):
    module = VelocityField(hidden=(16,), time_embedding_dim=8)
    if contexts is None:
        field = lambda p, x, t: module.apply(p, x, t)
        base = lambda x, t: field(params, x, t)
        reward = lambda x, _: -jnp.sum((x - 1.0) ** 2)
        params = module.init(jax.random.key(0), jnp.zeros(2), 0.0)
    else:
        field = lambda p, x, t, c: module.apply(p, x, t, jax.nn.one_hot(c, 3))
        base = lambda x, t, c: field(params, x, t, c)
        reward = lambda x, _, c: -jnp.sum((x - c) ** 2)
        params = module.init(jax.random.key(0), jnp.zeros(2), 0.0, jnp.zeros(3))
    kernel = adjoint_matching(field, base, reward, optax.adam(1e-2), 2, batch_size=16, num_steps=6, mesh=mesh,
                              contexts=contexts, importance_weighting=True)
    state = kernel.init(params)
    step = jax.jit(kernel.step)
    losses = []
    for i in range(2):
        state, info = step(state, jax.random.key(i))
        losses.append(float(info.loss))
    return state.params, losses


def main():
    assert jax.device_count() == 4, jax.devices()
    mesh = Mesh(np.asarray(jax.devices()), ("batch",))
    for contexts in (jnp.arange(3),):
        single, l1 = run(None, contexts)
        sharded, l4 = run(mesh, contexts)
        np.testing.assert_allclose(l4, l1, rtol=1e-5)
        for a, b in zip(jax.tree_util.tree_leaves(sharded), jax.tree_util.tree_leaves(single)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    try:
        adjoint_matching(lambda p, x, t: x, lambda x, t: x, lambda x, _: jnp.sum(x), optax.sgd(0.1), 2,
                         batch_size=10, mesh=mesh)
    except ValueError as err:
        assert "divisible" in str(err)
    else:
        raise AssertionError("batch_size 10 on 4 devices was accepted")
    print("SHARDED OK")


if __name__ == "__main__":
    main()

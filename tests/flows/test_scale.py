"""Scale options of the adjoint-matching kernel: sharding over the batch (4 forced CPU devices
in a subprocess), rematerialisation over the time grid, bf16 compute."""

import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tailjax.flows import (
    AdjointMatchingBatch, adjoint_matching, adjoint_matching_loss, cast_field, memoryless_coefficients,
)
from tailjax.nn import VelocityField


def test_sharded_step_equals_one_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    script = pathlib.Path(__file__).with_name("sharded_checks.py")
    root = pathlib.Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, str(script)], env=env, cwd=root, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "SHARDED OK" in out.stdout


def test_remat_gives_the_same_loss_and_gradient():
    module = VelocityField(hidden=(8,), time_embedding_dim=4)
    field = lambda p, x, t: module.apply(p, x, t)
    params = module.init(jax.random.key(0), jnp.zeros(2), 0.0)
    k, n = 7, 5
    coefs = memoryless_coefficients(num_steps=k)
    keys = jax.random.split(jax.random.key(1), 3)
    batch = AdjointMatchingBatch(*(jax.random.normal(kk, (n, k + 1, 2)) for kk in keys), jnp.arange(1, k))
    grad = lambda remat: jax.jit(jax.value_and_grad(lambda p: adjoint_matching_loss(
        p, batch, velocity_fn=field, coefficients=coefs, remat=remat, clip=50.0)[0]))(params)
    (v0, g0), (v1, g1) = grad(False), grad(True)
    np.testing.assert_allclose(v1, v0, rtol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g0)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_bf16_compute_tracks_float32(optax_promotion):
    module = VelocityField(hidden=(32,), time_embedding_dim=8)
    field = lambda p, x, t: module.apply(p, x, t)
    params = module.init(jax.random.key(0), jnp.zeros(2), 0.0)
    reward = lambda x, _: -jnp.sum((x - 1.0) ** 2)
    infos = {}
    for name, dtype in (("f32", None), ("bf16", jnp.bfloat16)):
        # The base in the compute dtype too: v - v_base is then exactly 0 at the start.
        base = lambda x, t: cast_field(field, dtype)(params, x, t)
        kernel = adjoint_matching(field, base, reward, optax.adam(1e-3), 2, batch_size=64, num_steps=8,
                                  compute_dtype=dtype, remat=dtype is not None)
        state, info = jax.jit(kernel.step)(kernel.init(params), jax.random.key(3))
        infos[name] = info
        assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(state.params))
    assert np.isfinite(float(infos["bf16"].loss))
    np.testing.assert_allclose(infos["bf16"].loss, infos["f32"].loss, rtol=0.05)
    np.testing.assert_allclose(infos["bf16"].reward, infos["f32"].reward, rtol=0.05, atol=0.05)

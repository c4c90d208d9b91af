"""tailjax.parallel on 4 forced CPU devices (in a subprocess) and on 1 device."""

import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from tailjax import parallel, risk


def test_four_devices_match_single_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    script = pathlib.Path(__file__).with_name("multidevice_checks.py")
    root = pathlib.Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, str(script)], env=env, cwd=root, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "MULTIDEVICE OK" in out.stdout


def test_single_device_path():
    x = jax.random.normal(jax.random.PRNGKey(0), (1000,))
    v, c = parallel.sharded_var_cvar(x, 0.05)
    rv, rc = risk.var_cvar(x, 0.05)
    assert float(v) == float(rv)
    assert float(c) == pytest.approx(float(rc), rel=1e-6)


def test_bad_input():
    mesh = parallel.sample_mesh()
    with pytest.raises(ValueError, match="tail_prob"):
        parallel.sharded_cvar(jnp.arange(8.0), 0.0, mesh=mesh)
    with pytest.raises(ValueError, match="1-D"):
        parallel.sharded_cvar(jnp.zeros((2, 4)), 0.1, mesh=mesh)
    with pytest.raises(ValueError, match="reduce"):
        parallel.global_statistic(jnp.sum, jnp.arange(8.0), reduce="prod")


def test_unsigned_integer_samples_of_the_lower_tail_are_not_wrapped():
    # -samples wrapped around for uint32 (the lower tail of 0..7 came out as -4294967296)
    x = jnp.arange(8, dtype=jnp.uint32)
    v, c = parallel.sharded_var_cvar(x, 0.25, side="lower")
    rv, rc = risk.var_cvar(jnp.arange(8.0), 0.25, side="lower")
    assert (float(v), float(c)) == (float(rv), float(rc)) == (2.0, 0.5)


def test_global_statistic_refuses_arrays_of_other_lengths_and_no_array():
    # shards of arrays of different lengths paired different samples (or broadcast silently)
    with pytest.raises(ValueError, match="arrays"):
        parallel.global_statistic(lambda a, b: jnp.sum(a * b), jnp.ones(1), jnp.arange(8.0))
    with pytest.raises(ValueError, match="arrays"):
        parallel.global_statistic(lambda: jnp.ones(()))  # was psum of a constant: the device count
    assert float(parallel.global_statistic(lambda a, b: jnp.sum(a * b), jnp.ones(8), jnp.arange(8.0))) == 28.0
    with pytest.raises(ValueError, match="devices"):
        parallel.sample_mesh([])


def test_sharded_var_cvar_refuses_misshapen_weights_and_a_traced_vector_level():
    x = jnp.arange(8.0)
    with pytest.raises(ValueError, match="weights"):  # was a jax broadcast_to error
        parallel.sharded_var_cvar(x, 0.25, weights=jnp.ones((2, 8)))
    with pytest.raises(ValueError, match="tail_prob"):  # was a scan carry type error
        jax.jit(lambda t: parallel.sharded_var_cvar(x, t))(jnp.array([0.25, 0.5]))
    v, c = jax.jit(lambda t: parallel.sharded_var_cvar(x, t))(0.25)
    assert (float(v), float(c)) == (5.0, 6.5)
    assert float(parallel.sharded_cvar([0.0, 1.0, 2.0, 3.0], 0.25)) == 3.0  # a list (was an AttributeError)

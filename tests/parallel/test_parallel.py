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

"""Run under XLA_FLAGS=--xla_force_host_platform_device_count=4 (see test_parallel.py)."""

import jax
import jax.numpy as jnp
import numpy as np

from tailjax import parallel, risk


def main():
    assert jax.device_count() == 4, jax.devices()
    mesh = parallel.sample_mesh()
    key = jax.random.PRNGKey(0)
    x = jax.random.normal(key, (4000,))
    xs = parallel.shard_samples(x, mesh)
    w = jax.random.uniform(jax.random.PRNGKey(1), (4000,), minval=0.1, maxval=2.0)
    ws = parallel.shard_samples(w, mesh)
    # sums, counts, means, extremes
    assert float(parallel.global_statistic(jnp.sum, xs)) == float(jnp.sum(x)) or np.isclose(
        float(parallel.global_statistic(jnp.sum, xs)), float(jnp.sum(x)), rtol=1e-5)
    assert int(parallel.global_statistic(lambda v: jnp.sum(v > 1.0), xs)) == int(jnp.sum(x > 1.0))
    assert float(parallel.global_statistic(jnp.max, xs, reduce="max")) == float(jnp.max(x))
    assert float(parallel.global_statistic(jnp.min, xs, reduce="min")) == float(jnp.min(x))
    # exact CVaR of the union, unweighted and weighted, both sides, several levels:
    # one compiled program per case grid (a compile per call would dominate the run).
    cases = [(p, side) for p in [0.5, 0.25, 0.013, 0.001, 1.0] for side in ["upper", "lower"]]

    @jax.jit
    def sharded(d, w):
        plain = [parallel.sharded_var_cvar(d, p, side=s, mesh=mesh) for p, s in cases]
        weighted = [parallel.sharded_var_cvar(d, p, weights=w, side=s, mesh=mesh) for p, s in cases]
        return jnp.asarray(plain), jnp.asarray(weighted)

    @jax.jit
    def single(d, w):
        plain = [risk.var_cvar(d, p, side=s) for p, s in cases]
        weighted = [risk.var_cvar(d, p, weights=w, side=s) for p, s in cases]
        return jnp.asarray(plain), jnp.asarray(weighted)

    for data in [x, jnp.round(3 * x), jnp.sort(x), jax.random.exponential(key, (4000,))]:
        got = sharded(parallel.shard_samples(data, mesh), ws)
        want = single(data, w)
        for g, r in zip(got, want):
            np.testing.assert_array_equal(np.asarray(g)[:, 0], np.asarray(r)[:, 0])  # VaR: exact
            np.testing.assert_allclose(np.asarray(g)[:, 1], np.asarray(r)[:, 1], rtol=1e-5, atol=1e-6)
    with jax.enable_x64(True):
        d64 = jax.random.normal(key, (4000,), jnp.float64)
        v, c = parallel.sharded_var_cvar(parallel.shard_samples(d64, mesh), 0.01, mesh=mesh)
        rv, rc = risk.var_cvar(d64, 0.01)
        assert float(v) == float(rv) and np.isclose(float(c), float(rc), rtol=1e-12)
    # n not divisible by the device count: zero-weight padding is exact
    odd = x[:4001 - 6]
    for p, side in [(0.013, "upper"), (1.0, "lower"), (0.5, "upper")]:
        v, c = parallel.sharded_var_cvar(odd, p, side=side, mesh=mesh, pad=True)
        rv, rc = risk.var_cvar(odd, p, side=side)
        assert float(v) == float(rv), (p, side, float(v), float(rv))
        assert np.isclose(float(c), float(rc), rtol=1e-5, atol=1e-6), (p, side, float(c), float(rc))
        v, c = parallel.sharded_var_cvar(odd, p, weights=w[: odd.shape[0]], side=side, mesh=mesh, pad=True)
        rv, rc = risk.var_cvar(odd, p, weights=w[: odd.shape[0]], side=side)
        assert float(v) == float(rv) and np.isclose(float(c), float(rc), rtol=1e-5, atol=1e-6)
    # one -inf outside the tail, one NaN: single- and multi-device agree
    low = x.at[int(jnp.argmin(x))].set(-jnp.inf)
    assert np.isclose(float(parallel.sharded_cvar(parallel.shard_samples(low, mesh), 0.01, mesh=mesh)),
                      float(risk.cvar(low, 0.01)), rtol=1e-5)
    nan = x.at[17].set(jnp.nan)
    assert np.isnan(float(parallel.sharded_cvar(parallel.shard_samples(nan, mesh), 0.01, mesh=mesh)))
    assert np.isnan(float(parallel.sharded_var_cvar(parallel.shard_samples(nan, mesh), 0.01, mesh=mesh)[0]))
    assert np.isnan(float(risk.var(nan, 0.01))) and np.isnan(float(risk.cvar(nan, 0.01)))
    print("MULTIDEVICE OK")


if __name__ == "__main__":
    main()

"""One process of the multi-process check (see test_multiprocess.py).

``python multiprocess_worker.py PROCESS_ID NUM_PROCESSES PORT OUT`` joins a
``jax.distributed`` run on 127.0.0.1 with 2 CPU devices per process (gloo collectives),
computes the sharded estimators and one training step of two families on global arrays
built from each process's rows, and (process 0) writes the results to OUT as JSON.
Run with ``REFERENCE=1`` and no distributed arguments for the single-process reference.
"""

import json
import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"

import jax  # noqa: E402

if len(sys.argv) > 4:
    pid, nproc, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=nproc, process_id=pid)
else:
    pid, nproc, out = 0, 1, sys.argv[1]

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

from tailjax import flows, importance, parallel  # noqa: E402
from tailjax.nn import VelocityField  # noqa: E402

N = 4096


def rows(a):
    """This process's rows of a global array (all rows in a single process)."""
    per = a.shape[0] // jax.process_count()
    return np.asarray(a[jax.process_index() * per:(jax.process_index() + 1) * per])


def main():
    mesh = parallel.sample_mesh()
    results = {"devices": jax.device_count(), "processes": jax.process_count()}
    x = jax.random.normal(jax.random.PRNGKey(0), (N,))
    w = jax.random.uniform(jax.random.PRNGKey(1), (N,), minval=0.1, maxval=2.0)
    xs, ws = parallel.shard_samples(rows(x), mesh), parallel.shard_samples(rows(w), mesh)
    for name, kwargs in [("plain", {}), ("weighted", {"weights": ws})]:
        for side in ("upper", "lower"):
            v, c = parallel.sharded_var_cvar(xs, 0.013, side=side, mesh=mesh, **kwargs)
            results[f"cvar_{name}_{side}"] = [float(v), float(c)]
    log_lr = 0.3 * jax.random.normal(jax.random.PRNGKey(2), (N,))
    ls = parallel.shard_samples(rows(log_lr), mesh)
    replicated = NamedSharding(mesh, P())
    v, c = jax.jit(lambda a, b: importance.is_var_cvar(a, b, 0.01), out_shardings=replicated)(xs, ls)
    results["is_var_cvar"] = [float(v), float(c)]

    # one flow-matching step on a batch sharded over every process's devices
    field = VelocityField(hidden=(32, 32))
    params = field.init(jax.random.PRNGKey(3), jnp.zeros(2), jnp.zeros(()))
    velocity = lambda p, z, t: field.apply(p, z, t)  # noqa: E731
    kernel = flows.flow_matching(velocity, optax.adam(1e-2))
    data = jax.random.normal(jax.random.PRNGKey(4), (512, 2)) * jnp.array([1.0, 0.3]) + 1.0
    batch = jax.make_array_from_process_local_data(NamedSharding(mesh, P("samples")), rows(data))
    state = jax.device_put(kernel.init(params), replicated)
    step = jax.jit(kernel.step, out_shardings=(replicated, replicated))
    new, info = step(state, jax.random.PRNGKey(5), batch)
    results["flow_matching_loss"] = float(info.loss)
    results["flow_matching_params"] = [float(jnp.sum(a)) for a in jax.tree_util.tree_leaves(new.params)]

    # one adjoint-matching step (its paths are drawn inside the step)
    am = flows.adjoint_matching(
        velocity, lambda z, t: velocity(params, z, t), lambda z, _: -jnp.sum(z**2),
        optax.adam(1e-3), 2, batch_size=64, num_steps=10,
    )
    am_state = jax.device_put(am.init(params), replicated)
    am_new, am_info = jax.jit(am.step, out_shardings=(replicated, replicated))(am_state, jax.random.PRNGKey(6))
    results["adjoint_matching_loss"] = float(am_info.loss)
    results["adjoint_matching_params"] = [float(jnp.sum(a)) for a in jax.tree_util.tree_leaves(am_new.params)]
    if jax.process_index() == 0:
        with open(out, "w") as f:
            json.dump(results, f)


if __name__ == "__main__":
    main()

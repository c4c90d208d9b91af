"""Strong and weak scaling of the sharded estimators and training steps over 1..D devices.

    python -m benchmarks.perf.scaling --size paper      # every local GPU (1 to 8)
    XLA_FLAGS=--xla_force_host_platform_device_count=4 JAX_PLATFORMS=cpu \\
        python -m benchmarks.perf.scaling --size small  # 4 forced CPU devices

For every device count d in 1, 2, 4, ... up to the local devices, on a 1-D mesh of the first
d devices:

* ``cvar``: ``parallel.sharded_cvar`` (exact, bisection on integer keys) on n float32;
* ``is_cvar``: the IS VaR/CVaR (``importance.is_var_cvar``) of n losses with
  log-likelihood ratios, jitted on arrays sharded over the mesh;
* ``gen_dfl_epoch``: one Gen-DFL epoch (portfolio d = 50, K = 100, n = 3,200 rows in batches
  of 320) with the batch sharded and the flow's parameters replicated (strong scaling only:
  the epoch is the unit of work);
* ``flow_matching_step``: one flow-matching step on a sharded batch of 4,096.

Strong scaling keeps the total work fixed (efficiency T_1 / (d T_d)); weak scaling keeps the
work per device fixed (efficiency T_1 / T_d). Each result is compared with the one-device
result (max relative difference). Runs unchanged on any number of devices, including 1.
"""

from __future__ import annotations

import functools
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from benchmarks import _harness as harness
from tailjax import dfl, flows, importance, parallel
from tailjax.nn import ConditionalFlow, VelocityField

SIZES = {
    # n per device for the weak runs; the strong runs use n per device x the largest count
    "small": {"cvar": 1 << 20, "is_cvar": 1 << 18, "gen_dfl_rows": 256, "flow_batch": 1024},
    "paper": {"cvar": 1 << 27, "is_cvar": 1 << 24, "gen_dfl_rows": 3200, "flow_batch": 4096},
}


def device_counts():
    total = len(jax.devices())
    counts, d = [], 1
    while d <= total:
        counts.append(d)
        d *= 2
    return counts


def _sharded(mesh, x):
    return jax.device_put(x, NamedSharding(mesh, P("samples")))


def bench_cvar(mesh, n, repeats):
    x = _sharded(mesh, jax.random.normal(jax.random.PRNGKey(0), (n,), jnp.float32))
    fn = jax.jit(lambda v: parallel.sharded_cvar(v, 0.01, mesh=mesh))
    t = harness.time_call(fn, x, repeats=repeats)
    return t["seconds"], np.asarray(t["output"])


def bench_is_cvar(mesh, n, repeats):
    losses = _sharded(mesh, jax.random.normal(jax.random.PRNGKey(1), (n,), jnp.float32))
    log_lr = _sharded(mesh, 0.2 * jax.random.normal(jax.random.PRNGKey(2), (n,), jnp.float32))
    out = NamedSharding(mesh, P())
    fn = jax.jit(lambda a, b: importance.is_var_cvar(a, b, 0.01), out_shardings=(out, out))
    t = harness.time_call(fn, losses, log_lr, repeats=repeats)
    return t["seconds"], np.asarray(t["output"])


@functools.lru_cache(maxsize=None)
def _gen_dfl_setup(rows):
    instance = dfl.problems.portfolio_instance(num_data=rows, num_assets=50, deg=2)
    flow = ConditionalFlow(50, instance.features.shape[1], num_layers=2, hidden_sizes=(64,))
    params = dfl.init_flow(jax.random.PRNGKey(3), flow, instance.features, instance.costs)
    config = dfl.GenDFLConfig(num_samples=100, proxy_samples=100, reference_samples=100, iterations=20)
    kernel = dfl.gen_dfl(flow, instance.problem, instance.model, config, optax.adam(1e-3))
    w_q = np.full(instance.costs.shape, 1.0 / 50, np.float32)
    return instance, kernel, params, w_q


def bench_gen_dfl_epoch(mesh, rows, repeats):
    instance, kernel, params, w_q = _gen_dfl_setup(rows)
    batch = 320 if rows >= 320 else rows
    replicated = NamedSharding(mesh, P())
    step = jax.jit(kernel.step, out_shardings=(replicated, replicated))
    data = tuple(_sharded(mesh, jnp.asarray(a[: rows - rows % batch]))
                 for a in (instance.features, instance.costs, w_q))

    def epoch(state):
        for i in range(data[0].shape[0] // batch):
            sl = tuple(a[i * batch:(i + 1) * batch] for a in data)
            state, _ = step(state, jax.random.PRNGKey(i), sl)
        return state

    state = jax.device_put(kernel.init(params), replicated)
    t = harness.time_call(epoch, state, repeats=max(1, repeats // 5))
    return t["seconds"], np.asarray(jax.tree_util.tree_leaves(t["output"].params)[0])


def bench_flow_matching(mesh, batch, repeats):
    field = VelocityField(hidden=(256, 256, 256))
    params = field.init(jax.random.PRNGKey(4), jnp.zeros(2), jnp.zeros(()))
    kernel = flows.flow_matching(lambda p, x, t: field.apply(p, x, t), optax.adam(1e-3))
    data = _sharded(mesh, jax.random.normal(jax.random.PRNGKey(5), (batch, 2)))
    replicated = NamedSharding(mesh, P())
    state = jax.device_put(kernel.init(params), replicated)
    step = jax.jit(kernel.step, out_shardings=(replicated, replicated))
    t = harness.time_call(lambda s: step(s, jax.random.PRNGKey(6), data)[0], state, repeats=repeats)
    return t["seconds"], np.asarray(jax.tree_util.tree_leaves(t["output"].params)[0])


BENCHES = {
    "cvar": (bench_cvar, "cvar"),
    "is_cvar": (bench_is_cvar, "is_cvar"),
    "gen_dfl_epoch": (bench_gen_dfl_epoch, "gen_dfl_rows"),
    "flow_matching_step": (bench_flow_matching, "flow_batch"),
}


def main(argv=None):
    parser = harness.parser(__doc__, out="results/scaling")
    parser.add_argument("--only", nargs="*", choices=list(BENCHES), default=list(BENCHES))
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    sizes = SIZES[args.size]
    counts = device_counts()
    rows = []
    for name in args.only:
        fn, size_key = BENCHES[name]
        per_device = sizes[size_key]
        for mode in (("strong",) if name == "gen_dfl_epoch" else ("weak", "strong")):
            base_time, base_out = None, None
            for d in counts:
                mesh = parallel.sample_mesh(jax.devices()[:d])
                if name == "gen_dfl_epoch":
                    work = per_device  # one fixed epoch
                else:
                    work = per_device * (d if mode == "weak" else counts[-1])
                seconds, out = fn(mesh, work, args.repeats)
                if d == 1:
                    base_time, base_out = seconds, out
                eff = base_time / seconds if mode == "weak" else base_time / (d * seconds)
                diff = None
                if mode == "strong":
                    diff = float(np.max(np.abs(out - base_out) / np.maximum(np.abs(base_out), 1e-12)))
                rows.append({"bench": name, "mode": mode, "devices": d, "work": work,
                             "ms": 1e3 * seconds, "efficiency": eff, "max_rel_diff_vs_1": diff})
                print(f"{name} {mode} d={d}: {1e3 * seconds:.3f} ms, efficiency {eff:.2f}", flush=True)
    harness.write_json(args.out, "scaling", {"size": args.size, "device_counts": counts, "rows": rows})
    print(harness.markdown_table(rows, ["bench", "mode", "devices", "work", "ms", "efficiency",
                                        "max_rel_diff_vs_1"],
                                 {"ms": ".3f", "efficiency": ".2f", "max_rel_diff_vs_1": ".1e"}))
    fig, axes = harness.figure(1, 2, figsize=(10, 3.8))
    for ax, mode in zip(axes, ("strong", "weak")):
        for name in args.only:
            pts = [(r["devices"], r["efficiency"]) for r in rows if r["bench"] == name and r["mode"] == mode]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=name)
        ax.axhline(0.9, color="k", ls="--", lw=1)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("devices")
        ax.set_ylabel("efficiency vs 1 device")
        ax.set_title(f"{mode} scaling")
        ax.legend(fontsize=7)
    harness.save_figure(fig, args.out, "scaling")
    return rows


if __name__ == "__main__":
    sys.exit(main() and 0)

"""Float32 against float64 CVaR decision layer on the Gen-DFL energy problem (issue 13, item 1).

The energy instances are built as the Gen-DFL benchmark builds them
(``benchmarks.setups.dfl.gen_dfl.make_data("energy", deg, seed, ...)``: synthetic spiky
prices, 2-2000 at deg 2, up to ~4e4 at deg 8); the first ``instances`` test rows get cost
samples from the true p(c|x). Two layers, as the benchmark uses them:

* training: K = 100 samples, QPTL reg 0.1 (``LP_REG``), 40 interior-point iterations;
* evaluation (``tailjax.dfl.regret_reference``): K = 1000 samples, reg 0, 60 iterations.

Per (deg, layer): converged counts in float32 and float64, median iterations, and the
relative difference of the float32 decision's objective CVaR_0.1[c^T w] + reg ||w||^2 from
the float64 decision's (both evaluated in float64 on the same samples). Runs with whatever
``tailjax`` is on the path (to measure the layer before a change, put an older checkout
first on ``PYTHONPATH``).

    python -m benchmarks.perf.decision_layer --out benchmarks/results/decision_layer_cpu/after
"""

from __future__ import annotations

import inspect
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _harness as harness
from benchmarks.setups.dfl.gen_dfl import LP_REG, make_data
from tailjax.layers import cvar_decision
from tailjax.risk import cvar

TAIL = 0.1
LAYERS = {"training": dict(K=100, reg=LP_REG, iterations=40), "evaluation": dict(K=1000, reg=0.0, iterations=60)}
SIZES = {"small": dict(instances=16, degs=(2, 8)), "paper": dict(instances=100, degs=(2, 4, 6, 8))}


def _samples(deg, num, K):
    inst, x, _ = make_data("energy", deg, 0, 320 + num, 50)
    with jax.enable_x64(True):
        model = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), inst.model)
        keys = jax.random.split(jax.random.PRNGKey(1), num)
        costs = jax.vmap(lambda k, xi: model.sample(k, xi, K))(keys, jnp.asarray(x[320:], jnp.float64))
        return inst.problem.polytope, np.asarray(costs)


def _solve(poly, costs, dtype, reg, iterations):
    extra = {"on_failure": "ignore"} if "on_failure" in inspect.signature(cvar_decision).parameters else {}
    p = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), poly)
    f = jax.jit(jax.vmap(lambda c: cvar_decision(c, p, TAIL, reg=reg, iterations=iterations,
                                                 return_info=True, **extra)))
    t0 = time.perf_counter()
    w, info = jax.block_until_ready(f(jnp.asarray(costs, dtype)))
    return np.asarray(w, np.float64), np.asarray(info.converged), np.asarray(info.iterations), time.perf_counter() - t0


def measure(deg, layer, instances):
    cfg = LAYERS[layer]
    poly, costs = _samples(deg, instances, cfg["K"])
    w32, ok32, it32, t32 = _solve(poly, costs, jnp.float32, cfg["reg"], cfg["iterations"])
    with jax.enable_x64(True):
        w64, ok64, it64, t64 = _solve(poly, costs, jnp.float64, cfg["reg"], cfg["iterations"])

        def objective(w):
            losses = jnp.einsum("nkd,nd->nk", jnp.asarray(costs), jnp.asarray(w))
            return np.asarray(jax.vmap(lambda l: cvar(l, TAIL))(losses) + cfg["reg"] * jnp.sum(jnp.asarray(w) ** 2, -1))

        o32, o64 = objective(w32), objective(w64)
    rel = (o32 - o64) / np.abs(o64)
    return dict(deg=deg, layer=layer, K=cfg["K"], reg=cfg["reg"], iterations=cfg["iterations"],
                price_min=float(costs.min()), price_max=float(costs.max()), instances=instances,
                converged32=int(ok32.sum()), converged64=int(ok64.sum()), median_it32=float(np.median(it32)),
                median_it64=float(np.median(it64)), rel_cvar_median=float(np.median(rel)),
                rel_cvar_max=float(np.max(rel)), within_1e4=int(np.sum(np.abs(rel) <= 1e-4)),
                seconds32_with_compile=t32, seconds64_with_compile=t64, rel_cvar=rel.tolist())


def main(argv=None):
    parser = harness.parser(__doc__, sizes=tuple(SIZES), out="results/decision_layer")
    args = parser.parse_args(argv)
    cfg = SIZES[args.size]
    rows = [measure(deg, layer, cfg["instances"]) for deg in cfg["degs"] for layer in LAYERS]
    harness.write_json(args.out, "decision_layer", {"size": args.size, "tail_prob": TAIL, "rows": rows})
    cols = ["deg", "layer", "price_max", "converged32", "converged64", "median_it32", "median_it64",
            "rel_cvar_median", "rel_cvar_max", "within_1e4"]
    table = harness.markdown_table(rows, cols, {"price_max": ".0f", "rel_cvar_median": ".2e", "rel_cvar_max": ".2e"})
    (args.out / "decision_layer.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()

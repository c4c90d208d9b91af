"""Decision-focused learning foundations: PTO (MSE) vs SPO+ vs Pred-DFL+ on the 5x5 shortest
path (PyEPO data, deg 6, noise half-width 0.5, 400 training points, linear predictors).

Measured on 100 test points: PyEPO's normalised regret on the realised costs, and Gen-DFL's
eq. (9) CVaR regret at tail_prob = 0.2 (the paper's alpha) against the true p(c|x) (M = 100
samples per test point, true CVaR-optimal decisions solved once by the CVaR layer and cached).
The classic PyEPO finding to reproduce: with a misspecified (linear) model at high degree, SPO+
beats PTO.
"""

from __future__ import annotations

import pathlib
import time

import jax
import jax.numpy as jnp

from benchmarks import _harness as harness
from benchmarks.setups.dfl import decide_baseline, train_baseline
from tailjax.dfl import cvar_regret, normalized_regret, regret_reference
from tailjax.dfl.problems import shortest_path_instance

METHODS = {"PTO (MSE)": "mse", "SPO+": "spo+", "Pred-DFL+": "dfl+"}
TAIL_PROB = 0.2


def run(out_dir: pathlib.Path) -> str:
    inst = shortest_path_instance(num_data=600, num_features=5, deg=6, noise_width=0.5, seed=0, reg=0.5)
    x, c = inst.features, inst.costs
    x_tr, c_tr, x_te, c_te = x[:400], c[:400], x[400:500], c[400:500]
    t0 = time.perf_counter()
    ref = regret_reference(jax.random.key(1), inst.problem, inst.model, jnp.asarray(x_te, jnp.float32), TAIL_PROB,
                           num_samples=100, chunk_size=16)
    ref_s = time.perf_counter() - t0
    rows = []
    for label, method in METHODS.items():
        t0 = time.perf_counter()
        trained = train_baseline(method, jax.random.key(0), inst, x_tr, c_tr, epochs=12, batch_size=32,
                                 learning_rate=0.05, tail_prob=TAIL_PROB, num_samples=8)
        w = decide_baseline(trained, x_te, inst, tail_prob=TAIL_PROB, num_samples=32)
        rows.append(dict(method=label, normalized_regret=float(normalized_regret(w, c_te, inst.problem, inst.oracle)),
                         cvar_regret_pct=float(cvar_regret(w, ref, inst.problem)),
                         seconds=time.perf_counter() - t0))
    harness.write_json(out_dir, "c_dfl", dict(tail_prob=TAIL_PROB, reference_seconds=ref_s, rows=rows))
    fig, axes = harness.figure(1, 2, figsize=(8, 3))
    names = [r["method"] for r in rows]
    axes[0].bar(names, [r["normalized_regret"] for r in rows], color="C0")
    axes[0].set_title("normalised regret (PyEPO)")
    axes[1].bar(names, [r["cvar_regret_pct"] for r in rows], color="C1")
    axes[1].set_title(f"CVaR regret %, tail_prob={TAIL_PROB} (Gen-DFL eq. 9)")
    harness.save_figure(fig, out_dir, "c_dfl")
    return "5x5 shortest path, deg 6, linear predictors, 100 test points\n" + harness.markdown_table(
        rows, ["method", "normalized_regret", "cvar_regret_pct", "seconds"],
        {"normalized_regret": ".4f", "cvar_regret_pct": ".2f", "seconds": ".1f"})

"""Diff-DRO's decision (the moment-DRO cone, :func:`tailjax.dfl.moment_dro_decision`) on the
Gen-DFL Table 1 instances at paper size: the part of a Table 1 cell that took most of its time.

Per (problem, protocol): degree 2, seed 0, 50 items, the covariance of the first 320 rows
(:func:`tailjax.dfl.residual_covariance`), ``instances`` decisions at the next rows' costs
(tail 0.05, float32, the baseline's defaults), as one ``jit(vmap(...))`` call: its time
(median of ``repeats`` calls after one to compile), and each decision's cone objective
``sign c^T w + w^T P w + kappa ||Sigma^(1/2) w||``, so that two versions of the solver can be
compared on the same decisions. Then one gradient of :func:`tailjax.dfl.diff_dro_loss` on a
batch of 32 rows (a training step's work). Runs with whatever ``tailjax`` is on the path (to
time the solver before a change, put an older checkout first on ``PYTHONPATH``).

    python -m benchmarks.perf.dro_decision --out benchmarks/results/dro_decision_cpu/after
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _harness as harness
from benchmarks.setups.dfl.gen_dfl import make_data
from tailjax.dfl import DFLBatch, diff_dro_loss, moment_dro_decision, residual_covariance, worst_case_cvar_multiplier
from tailjax.nn import LinearPredictor

TAIL = 0.05
CASES = (("portfolio", "paper-text"), ("portfolio", "paper-code"), ("knapsack", "paper-code"),
         ("shortest_path", "paper-code"))
SIZES = {"small": dict(instances=16, repeats=2), "paper": dict(instances=64, repeats=3)}


def measure(problem, protocol, instances, repeats):
    inst, x, c = make_data(problem, 2, 0, 320 + instances, 50, protocol=protocol)
    prob = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), inst.problem)
    cov = jnp.asarray(residual_covariance(x[:320], c[:320]), jnp.float32)
    means = jnp.asarray(c[320:])
    kappa = worst_case_cvar_multiplier(TAIL)
    decide = jax.jit(jax.vmap(lambda m: moment_dro_decision(prob, m, cov, TAIL)))
    timed = harness.time_call(decide, means, repeats=repeats)
    seconds, w = timed["seconds"], timed["output"]
    objective = jax.vmap(lambda w, m: prob.sign * (m @ w) + w @ (prob.quadratic @ w)
                         + kappa * jnp.sqrt(jnp.maximum(w @ (cov @ w), 0.0)))(w, means)

    predictor = LinearPredictor(prob.dim)
    params = predictor.init(jax.random.PRNGKey(0), jnp.asarray(x[:1]))
    rows = slice(0, 32)
    w_star = jax.vmap(inst.oracle)(jnp.asarray(c[rows]))
    batch = DFLBatch(jnp.asarray(x[rows]), jnp.asarray(c[rows]), w_star)
    loss = lambda p: diff_dro_loss(p, batch, jax.random.PRNGKey(1), apply_fn=predictor.apply,  # noqa: E731
                                   problem=prob, cov=cov, tail_prob=TAIL)[0]
    grad_seconds = harness.time_call(jax.jit(jax.grad(loss)), params, repeats=repeats)["seconds"]
    return dict(problem=problem, protocol=protocol, instances=instances, decision_seconds=seconds,
                grad32_seconds=grad_seconds, finite=int(np.sum(np.all(np.isfinite(np.asarray(w)), -1))),
                objective_mean=float(jnp.mean(objective)), objective=np.asarray(objective).tolist())


def main(argv=None):
    parser = harness.parser(__doc__, sizes=tuple(SIZES), out="results/dro_decision")
    args = parser.parse_args(argv)
    cfg = SIZES[args.size]
    rows = []
    for problem, protocol in CASES:
        rows.append(measure(problem, protocol, cfg["instances"], cfg["repeats"]))
        print(f"{problem} {protocol}: {rows[-1]['decision_seconds']:.2f} s for {cfg['instances']} decisions, "
              f"gradient {rows[-1]['grad32_seconds']:.2f} s", flush=True)
    harness.write_json(args.out, "dro_decision", {"size": args.size, "tail_prob": TAIL, "rows": rows})
    table = harness.markdown_table(rows, ["problem", "protocol", "instances", "decision_seconds", "grad32_seconds",
                                          "finite", "objective_mean"],
                                   {"decision_seconds": ".2f", "grad32_seconds": ".2f", "objective_mean": ".6g"})
    (args.out / "dro_decision.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()

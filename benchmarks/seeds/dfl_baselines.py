"""Normalised CVaR regret of every Pred-DFL baseline on the four Gen-DFL problems (the rows and
columns of Gen-DFL's Table 1 without Gen-DFL itself), over seeds.

For each problem (portfolio, knapsack, shortest path, synthetic energy), polynomial degree
deg and seed: generate the data with the paper's defaults (n training points, sigma = 20 for
portfolio/knapsack, noise half-width 0.5 for shortest path and energy), train each baseline
with a linear predictor (Adam, batch 32), and evaluate on held-out features with Gen-DFL's
eq. (9) at ``--tail-prob`` (the paper's alpha) against the true p(c|x) (M samples per test
point; the true CVaR-optimal decisions are solved once per (problem, deg, seed) and shared by
all methods). PyEPO's normalised regret on the realised test costs is reported too. Diff-DRO
is not among them: its ambiguity set is fit on numpy training data outside the jitted trainer
(``benchmarks.seeds.gen_dfl`` runs it).

Training runs as one jitted function per (problem, method) (``lax.scan`` over the steps of
:func:`tailjax.dfl.baseline_kernel`, the problem passed as a traced pytree; the minibatch rows
of every step drawn beforehand by :func:`tailjax.training.minibatches`), so a single
compilation serves every degree and seed.

--size small: 1 seed, deg in {2, 6}, n = 200, 5 epochs, M = 64 (CPU, minutes).
--size paper: 10 seeds, deg in {2, 4, 6, 8}, n = 320 (Table 2), 30 epochs, M = 1000 (GPU).
"""

from __future__ import annotations

import json
import pathlib
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import _harness as harness
from benchmarks.setups.dfl import BASELINES, METHODS, loss_options
from tailjax.dfl import DFLBatch, baseline_kernel, cvar_regret, decision, normalized_regret, regret_reference
from tailjax.dfl.problems import PROBLEMS, exact_oracle, make_instance
from tailjax.nn import LinearPredictor
from tailjax.training import minibatches

SIZES = {
    "small": dict(seeds=1, degs=(2, 6), n=200, n_test=50, epochs=5, M=64),
    "paper": dict(seeds=10, degs=(2, 4, 6, 8), n=320, n_test=200, epochs=30, M=1000),
}
REG = {"portfolio": 0.0, "knapsack": 0.5, "shortest_path": 0.5, "energy": 0.5}
BATCH, LR, K_DFLPLUS = 32, 1e-2, 16


def train_and_decide(name, method, epochs, tail_prob, problem, x_tr, c_tr, x_te, key):
    """Train ``method`` and return test decisions and the loss of every step."""
    k_data, k_train = jax.random.split(key)
    num_steps = epochs * (x_tr.shape[0] // BATCH)
    rows = minibatches(k_data, jnp.arange(x_tr.shape[0]), BATCH, stack=num_steps)(0)  # (steps, BATCH)
    return _train_and_decide(name, method, tail_prob, problem, x_tr, c_tr, x_te, rows, k_train)


@partial(jax.jit, static_argnums=(0, 1, 2))
def _train_and_decide(name, method, tail_prob, problem, x_tr, c_tr, x_te, rows, key):
    # one compilation per (name, method): the data, the problem and the batch rows are traced
    oracle = exact_oracle(name, problem)
    w_tr = jax.vmap(oracle)(c_tr)
    module = LinearPredictor(c_tr.shape[1])
    k_init, k_fit, k_eval = jax.random.split(key, 3)
    params = module.init(k_init, x_tr[:1])
    sigma = 0.5 * jnp.mean(jnp.std(c_tr, axis=0))  # Pred-DFL+'s scale (traced: the costs are)
    options = loss_options(method, tail_prob=tail_prob, num_samples=K_DFLPLUS, sigma=sigma)
    loss = partial(BASELINES[method], apply_fn=module.apply, problem=problem, oracle=oracle, **options)
    kernel = baseline_kernel(loss, optax.adam(LR))

    def body(state, step):
        i, idx = step
        state, info = kernel.step(state, jax.random.fold_in(k_fit, i), DFLBatch(x_tr[idx], c_tr[idx], w_tr[idx]))
        return state, info.loss

    state, losses = jax.lax.scan(body, kernel.init(params, w_tr), (jnp.arange(rows.shape[0]), rows))
    c_hat = module.apply(state.params, x_te)
    if method != "dfl+":
        return jax.vmap(oracle)(c_hat), losses
    keys = jax.random.split(k_eval, c_hat.shape[0])
    eps = jax.vmap(lambda k: jax.random.normal(k, (64, c_hat.shape[1]), c_hat.dtype))(keys)
    w = jax.vmap(lambda ch, e: decision(problem, ch + sigma * e, tail_prob, reg=0.0))(c_hat, eps)
    return w, losses


def run(cfg, tail_prob, out, problems, methods, seeds):
    """Seeds outermost, so a run cut short still covers every (problem, deg) cell; each row is
    appended to ``out/dfl_baselines_rows.jsonl`` as soon as it is measured (runs with other
    seeds or methods add to the same file; summarise it with ``--from-rows``)."""
    rows = []
    out.mkdir(parents=True, exist_ok=True)
    log = out / "dfl_baselines_rows.jsonl"
    device = harness.environment()["device"]
    for seed in seeds:
        for name in problems:
            for deg in cfg["degs"]:
                inst = make_instance(name, num_data=cfg["n"] + cfg["n_test"], deg=deg, seed=seed)
                problem = inst.problem._replace(reg=jnp.asarray(REG[name], inst.problem.reg.dtype))
                x = jnp.asarray(inst.features, jnp.float32)
                c = jnp.asarray(inst.costs, jnp.float32)
                n = cfg["n"]
                x_tr, c_tr, x_te, c_te = x[:n], c[:n], x[n:], c[n:]
                t0 = time.perf_counter()
                ref = regret_reference(jax.random.key(1000 + seed), inst.problem, inst.model, x_te, tail_prob,
                                       num_samples=cfg["M"], chunk_size=16)
                ref_s = time.perf_counter() - t0
                oracle = exact_oracle(name, inst.problem)
                for method in methods:
                    t0 = time.perf_counter()
                    w, losses = train_and_decide(name, method, cfg["epochs"], tail_prob, problem, x_tr, c_tr, x_te,
                                                 jax.random.key(seed))
                    w = jax.block_until_ready(w)
                    row = dict(problem=name, deg=deg, seed=seed, method=method,
                               cvar_regret_pct=float(cvar_regret(w, ref, inst.problem)),
                               normalized_regret=float(normalized_regret(w, c_te, inst.problem, oracle)),
                               final_loss=float(losses[-(x_tr.shape[0] // BATCH):].mean()),
                               seconds=time.perf_counter() - t0, reference_seconds=ref_s, device=device)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    with open(log, "a") as f:
                        f.write(json.dumps(row) + "\n")
    return rows


def summarize(rows):
    """{(problem, method, deg): (mean, sd, seeds)} of the CVaR regrets."""
    cells = {}
    for r in rows:
        cells.setdefault((r["problem"], r["method"], r["deg"]), []).append(r["cvar_regret_pct"])
    return {k: (*harness.mean_sd(v), len(v)) for k, v in cells.items()}


def _plot(summary, problems, methods, degs, out):
    fig, axes = harness.figure(1, len(problems), figsize=(4 * len(problems), 3.2), squeeze=False)
    for ax, name in zip(axes[0], problems):
        for m in methods:
            ax.plot(degs, [summary.get((name, m, d), (np.nan,))[0] for d in degs], marker="o", label=m)
        ax.set(title=name, xlabel="deg", ylabel="CVaR regret %")
    axes[0][0].legend(fontsize=7)
    harness.save_figure(fig, out, "dfl_baselines")


def main(argv=None):
    parser = harness.parser(__doc__, sizes=tuple(SIZES), out="results/dfl_baselines", seeds=None,
                            compile_cache=True)
    parser.add_argument("--tail-prob", type=float, default=0.1, help="evaluation/training level (the paper's alpha)")
    parser.add_argument("--problems", nargs="*", default=list(PROBLEMS))
    traced = [m for m in METHODS if m != "diff-dro"]
    parser.add_argument("--methods", nargs="*", default=traced, choices=traced)
    parser.add_argument("--from-rows", default=None,
                        help="summarise an earlier (possibly cut-short) run's rows.jsonl instead of running")
    args = parser.parse_args(argv)
    harness.use_compile_cache(args)
    cfg = dict(SIZES[args.size])
    args.seeds = cfg["seeds"] if args.seeds is None else args.seeds
    t0 = time.perf_counter()
    if args.from_rows:
        rows = [json.loads(line) for line in open(args.from_rows) if line.strip()]
    else:
        rows = run(cfg, args.tail_prob, pathlib.Path(args.out), args.problems, args.methods, harness.seeds(args))
    summary = summarize(rows)
    degs = cfg["degs"]
    table = [dict(problem=p, method=m, deg=d, mean=v[0], sd=v[1], seeds=v[2]) for (p, m, d), v in summary.items()]
    harness.write_json(args.out, "dfl_baselines", dict(size=args.size, tail_prob=args.tail_prob, config=cfg,
                                                       seconds=time.perf_counter() - t0, rows=rows, summary=table))
    _plot(summary, args.problems, args.methods, degs, args.out)
    cells = [dict(problem=p, method=m, **{f"deg {d}": (f"{summary[p, m, d][0]:.2f} ± {summary[p, m, d][1]:.1f}"
                                                       if (p, m, d) in summary else "-") for d in degs})
             for p in args.problems for m in args.methods]
    print(f"CVaR regret % (tail_prob={args.tail_prob}), mean ± sd over seeds")
    print(harness.markdown_table(cells, ["problem", "method", *(f"deg {d}" for d in degs)]))
    return dict(rows=rows, summary=table)


if __name__ == "__main__":
    main()

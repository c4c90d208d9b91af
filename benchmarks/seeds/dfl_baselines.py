"""Normalised CVaR regret of every Pred-DFL baseline on the four Gen-DFL problems (the rows and
columns of Gen-DFL's Table 1 without Gen-DFL itself), over seeds.

For each problem (portfolio, knapsack, shortest path, synthetic energy), polynomial degree
deg and seed: generate the data with the paper's defaults (n training points, sigma = 20 for
portfolio/knapsack, noise half-width 0.5 for shortest path and energy), train each baseline
with a linear predictor (Adam, batch 32), and evaluate on held-out features with Gen-DFL's
eq. (9) at ``alpha`` against the true p(c|x) (M samples per test point; the true CVaR-optimal
decisions are solved once per (problem, deg, seed) and shared by all methods). PyEPO's
normalised regret on the realised test costs is reported too.

Training runs as one jitted function per (problem, method) (``lax.scan`` over epochs and
minibatches, the problem passed as a traced pytree), so a single compilation serves every
degree and seed.

--size small: 1 seed, deg in {2, 6}, n = 200, 5 epochs, M = 64 (CPU, minutes).
--size paper: 10 seeds, deg in {2, 4, 6, 8}, n = 320 (Table 2), 30 epochs, M = 1000 (GPU).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tailjax.dfl.baselines import METHODS, DFLBatch, baseline_kernel, make_loss
from tailjax.dfl.metrics import cvar_regret, normalized_regret, regret_reference
from tailjax.dfl.problems import PROBLEMS, decision, exact_oracle, make_instance
from tailjax.nn.predictors import LinearPredictor, init_predictor

SIZES = {
    "small": dict(seeds=1, degs=(2, 6), n=200, n_test=50, epochs=5, M=64),
    "paper": dict(seeds=10, degs=(2, 4, 6, 8), n=320, n_test=200, epochs=30, M=1000),
}
REG = {"portfolio": 0.0, "knapsack": 0.5, "shortest_path": 0.5, "energy": 0.5}
BATCH, LR, K_DFLPLUS = 32, 1e-2, 16


def _sigma(c):
    return 0.5 * jnp.mean(jnp.std(c, axis=0))


@partial(jax.jit, static_argnums=(0, 1, 2, 3))
def train_and_decide(name, method, epochs, alpha, problem, x_tr, c_tr, x_te, key):
    """Train ``method`` and return test decisions; one compilation per (name, method)."""
    oracle = exact_oracle(name, problem)
    w_tr = jax.vmap(oracle)(c_tr)
    module = LinearPredictor(c_tr.shape[1])
    k_init, k_fit, k_eval = jax.random.split(key, 3)
    params = init_predictor(module, k_init, x_tr.shape[1], c_tr.dtype)
    sigma = _sigma(c_tr)
    if method == "dfl+":  # sigma depends on the (traced) training costs
        loss = _dflplus_loss(module, problem, alpha, sigma)
    else:
        loss = make_loss(method, module.apply, problem, oracle, pool_size=32)
    init, step = baseline_kernel(loss, optax.adam(LR))
    state = init(params, w_tr)
    steps = x_tr.shape[0] // BATCH

    def epoch(st, k):
        perm = jax.random.permutation(k, x_tr.shape[0])[: steps * BATCH].reshape(steps, BATCH)

        def body(s, idx):
            s, info = step(s, jax.random.fold_in(k, idx[0]), DFLBatch(x_tr[idx], c_tr[idx], w_tr[idx]))
            return s, info.loss

        return jax.lax.scan(body, st, perm)

    state, losses = jax.lax.scan(epoch, state, jax.random.split(k_fit, epochs))
    c_hat = module.apply(state.params, x_te)
    if method != "dfl+":
        return jax.vmap(oracle)(c_hat), losses
    keys = jax.random.split(k_eval, c_hat.shape[0])
    eps = jax.vmap(lambda k: jax.random.normal(k, (64, c_hat.shape[1]), c_hat.dtype))(keys)
    w = jax.vmap(lambda ch, e: decision(problem, ch + sigma * e, alpha, reg=0.0))(c_hat, eps)
    return w, losses


def _dflplus_loss(module, problem, alpha, sigma):
    from tailjax.dfl.baselines.surrogates import regret_loss

    def loss(params, batch, key):
        c_hat = module.apply(params, batch.features)
        keys = jax.random.split(key, c_hat.shape[0])

        def one(ch, c, w_star, k):
            eps = jax.random.normal(k, (K_DFLPLUS, ch.shape[0]), ch.dtype)
            return regret_loss(decision(problem, ch + sigma * eps, alpha), c, w_star, problem)

        return jnp.mean(jax.vmap(one)(c_hat, batch.costs, batch.solutions, keys))

    return loss


def run(cfg, alpha, out, problems, methods):
    """Seeds outermost, so a run cut short still covers every (problem, deg) cell; each row is
    appended to ``out/dfl_baselines_rows.jsonl`` as soon as it is measured (runs with other
    seeds or methods add to the same file; summarise it with ``--from-rows``)."""
    rows = []
    log = out / "dfl_baselines_rows.jsonl"
    for seed in range(cfg.get("first_seed", 0), cfg.get("first_seed", 0) + cfg["seeds"]):
        for name in problems:
            for deg in cfg["degs"]:
                inst = make_instance(name, num_data=cfg["n"] + cfg["n_test"], deg=deg, seed=seed)
                problem = inst.problem._replace(reg=jnp.asarray(REG[name], inst.problem.reg.dtype))
                x = jnp.asarray(inst.features, jnp.float32)
                c = jnp.asarray(inst.costs, jnp.float32)
                n = cfg["n"]
                x_tr, c_tr, x_te, c_te = x[:n], c[:n], x[n:], c[n:]
                t0 = time.perf_counter()
                ref = regret_reference(jax.random.key(1000 + seed), inst.problem, inst.model, x_te, alpha,
                                       num_samples=cfg["M"], chunk_size=16)
                ref_s = time.perf_counter() - t0
                oracle = exact_oracle(name, inst.problem)
                for method in methods:
                    t0 = time.perf_counter()
                    w, losses = train_and_decide(name, method, cfg["epochs"], alpha, problem, x_tr, c_tr, x_te,
                                                 jax.random.key(seed))
                    w = jax.block_until_ready(w)
                    row = dict(problem=name, deg=deg, seed=seed, method=method,
                               cvar_regret_pct=float(cvar_regret(w, ref, inst.problem)),
                               normalized_regret=float(normalized_regret(w, c_te, inst.problem, oracle)),
                               final_loss=float(losses[-1].mean()), seconds=time.perf_counter() - t0,
                               reference_seconds=ref_s, device=jax.devices()[0].device_kind)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    with open(log, "a") as f:
                        f.write(json.dumps(row) + "\n")
    return rows


def summarize(rows):
    table = {}
    for r in rows:
        table.setdefault((r["problem"], r["method"], r["deg"]), []).append(r["cvar_regret_pct"])
    return {k: (float(np.mean(v)), float(np.std(v)), len(v)) for k, v in table.items()}


def _plot(summary, problems, methods, degs, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(problems), figsize=(4 * len(problems), 3.2), squeeze=False)
    for ax, name in zip(axes[0], problems):
        for m in methods:
            ys = [summary.get((name, m, d), (np.nan,))[0] for d in degs]
            ax.plot(degs, ys, marker="o", label=m)
        ax.set_title(name)
        ax.set_xlabel("deg")
        ax.set_ylabel("CVaR regret %")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", choices=list(SIZES), default="small")
    parser.add_argument("--out", default="results/dfl_baselines")
    parser.add_argument("--alpha", type=float, default=0.1, help="Gen-DFL's alpha (= tail_prob)")
    parser.add_argument("--problems", nargs="*", default=list(PROBLEMS))
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument("--seeds", type=int, default=None, help="override the size's number of seeds")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--from-rows", default=None,
                        help="summarise an earlier (possibly cut-short) run's rows.jsonl instead of running")
    args = parser.parse_args(argv)
    cfg = dict(SIZES[args.size])
    if args.seeds is not None:
        cfg["seeds"] = args.seeds
    cfg["first_seed"] = args.first_seed
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.from_rows:
        rows = [json.loads(line) for line in open(args.from_rows) if line.strip()]
        cfg["seeds"] = len({r["seed"] for r in rows})
    else:
        rows = run(cfg, args.alpha, out, args.problems, args.methods)
    summary = summarize(rows)
    degs = cfg["degs"]
    device = rows[0].get("device", "?") if rows else jax.devices()[0].device_kind
    result = dict(size=args.size, alpha=args.alpha, device=device, config=cfg,
                  seconds=time.perf_counter() - t0, rows=rows,
                  summary=[dict(problem=p, method=m, deg=d, mean=v[0], std=v[1], seeds=v[2])
                           for (p, m, d), v in summary.items()])
    (out / "dfl_baselines.json").write_text(json.dumps(result, indent=2))
    _plot(summary, args.problems, args.methods, degs, out / "dfl_baselines.png")
    head = f"{'problem':14s} {'method':9s} " + " ".join(f"{'deg ' + str(d):>16s}" for d in degs)
    lines = [f"CVaR regret % (alpha={args.alpha}), mean +- std over seeds", head]
    for p in args.problems:
        for m in args.methods:
            cells = [summary.get((p, m, d)) for d in degs]
            lines.append(f"{p:14s} {m:9s} " + " ".join(
                f"{c[0]:9.2f} +- {c[1]:4.1f}" if c else f"{'-':>16s}" for c in cells))
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main()

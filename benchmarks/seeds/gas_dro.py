"""GAS-DRO experiments (Wen & Yang): carbon-intensity forecasting under zone shift (Table 1
structure), digits under shift (Table 7 structure), ablations (budget epsilon, corruption
level, predictor capacity) and the cost of every method (Table 6 structure).

    python -m benchmarks.seeds.gas_dro --size small             # CPU, minutes per seed
    python -m benchmarks.seeds.gas_dro --size paper --seeds 5   # GPU

Every method trains the same predictor from the same initialisation for the same number of
predictor updates (GAS-DRO: one update per outer iteration), same batch size and learning
rate, and returns its last iterate (no early stopping). Budgets are relative to the nominal
generator: epsilon = J(theta_0, P_0) + delta. GAS-DRO is trained for every (nominal weight
lam, delta) of the size's grid and the run with the best score on a training-domain
validation split (end of each training year; end of the USPS training set) is reported; the
whole grid's test numbers are stored too (and give the budget ablation). The carbon DDPM's T'
matches the paper's noise level (``benchmarks.setups.dro.matched_last_steps``: 15 of 500
steps, 2 of the small size's 50). With several seeds the tables give mean +- sd over seeds
and a sign test of GAS-DRO against each method on the per-seed average. Writes
``gas_dro.json`` and ``gas_dro.png`` under ``--out`` and prints the tables. Data: ``--data``
or $TAILJAX_DATA (folder holding carbon_intensity/ and usps/).
"""

from __future__ import annotations

import os
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _harness as harness
from benchmarks.setups.dro import (
    METHODS,
    MethodSettings,
    accuracy,
    carbon_setup,
    digits_setup,
    evaluate,
    forecast_loss,
    train_method,
)
from tailjax import dro
from tailjax.nn import LSTMForecaster

SIZES = {
    "small": dict(
        carbon=dict(stride=4, test_stride=24, num_steps=50, noise_features=(256, 256),
                    generator_steps=3000, vae_steps=2000, validation=0.1),
        carbon_steps=400,
        digits=dict(vae_steps=2000, max_test=1000, validation=0.1),
        digits_steps=600,
        digits_deltas=(0.0005, 0.002),
        gas=dro.GasDroConfig(inner_steps=2, epochs=5, dual_lr=1.0, advantages="center"),
        lams=(0.0, 0.5),
        deltas=(0.001, 0.005, 0.02),
        hiddens=(16, 64),
    ),
    "smoke": dict(  # seconds: checks that every part runs, numbers mean nothing
        carbon=dict(stride=16, test_stride=96, num_steps=10, last_steps=5, noise_features=(16,), generator_steps=20,
                    vae_steps=20, validation=0.1),
        carbon_steps=4,
        digits=dict(vae_steps=20, max_test=100, max_train=500, validation=0.1),
        digits_steps=4,
        gas=dro.GasDroConfig(inner_steps=1, epochs=1, dual_lr=1.0, advantages="center"),
        lams=(0.0, 0.5),
        deltas=(0.01,),
        hiddens=(8,),
    ),
    "paper": dict(
        carbon=dict(stride=1, test_stride=1, num_steps=500, noise_features=(256, 256, 256),
                    generator_steps=10_000, vae_steps=5_000, validation=0.1),
        carbon_steps=300,
        digits=dict(vae_steps=5_000, validation=0.1),
        digits_steps=1000,
        digits_deltas=(0.0005, 0.002),
        gas=dro.GasDroConfig(inner_steps=10, epochs=10, dual_lr=1.0, advantages="center"),
        lams=(0.0, 0.5),
        deltas=(0.001, 0.005, 0.02),
        hiddens=(16, 64),
    ),
}
LEVELS = {"gaussian": (0.1, 0.2, 0.3, 0.4, 0.5), "perlin": (0.25, 0.5, 0.75, 1.0), "cutout": (4, 6, 8, 10, 12)}
TASKS = {"carbon": ("mse", "min"), "digits": ("accuracy", "max")}  # metric, better


def summary(scores: dict[str, float], worst=max) -> dict[str, float]:
    return {"average": float(np.mean(list(scores.values()))), "worst": float(worst(scores.values()))}


def settings_for(cfg, steps, budget, lam=0.0):
    return MethodSettings(steps=steps, gas=cfg["gas"]._replace(budget=budget, nominal_weight=lam))


def gas_record(hist, setup, w, score_train):
    """What shows whether the adversary did its job: the adversarial loss against the loss of
    the same predictor on the nominal training data, and J against the budget."""
    tail = max(1, len(hist["mu"]) // 10)
    return {"adversarial_loss": float(np.mean(hist["adversarial_loss"][-tail:])),
            "train_loss": score_train(w), "final_J": float(np.mean(hist["reconstruction"][-tail:])),
            "final_mu": float(hist["mu"][-1])}


def train_all(cfg, key, setup, steps, methods, scores, better, offset, log, grid_deltas):
    """Train every method; GAS-DRO once per (nominal_weight, delta) of the grid, the one
    with the best validation score kept (``scores(w) -> (validation, per-test dict)``)."""
    results, predictors = {}, {}
    train_loss = lambda w: float(np.mean(list(evaluate(setup.loss_fn, w, {"t": setup.train}).values())))  # noqa: E731
    for name in methods:
        # the key depends on the method, not on its place in ``methods``: a subset reruns the same
        k = jax.random.fold_in(key, offset + METHODS.index(name))
        if name != "GAS-DRO":
            w, cost, _ = train_method(name, k, setup.loss_fn, setup.params, setup.train, setup.resources,
                                      settings_for(cfg, steps, setup.budget), measure_memory=True)
            val, test = scores(w)
            results[name], predictors[name] = {"test": test, "validation": val, **cost}, w
        else:
            grid, ws = {}, {}
            for lam in cfg["lams"]:
                for d in grid_deltas:
                    budget = setup.info["J0"] + d
                    w, cost, hist = train_method(name, k, setup.loss_fn, setup.params, setup.train,
                                                 setup.resources, settings_for(cfg, steps, budget, lam),
                                                 measure_memory=not grid)
                    val, test = scores(w)
                    tag = f"lam={lam},delta={d}"
                    grid[tag] = {"nominal_weight": lam, "delta": d, "budget": budget, "test": test,
                                 "validation": val, **cost, **gas_record(hist, setup, w, train_loss)}
                    ws[tag] = w
                    g = grid[tag]
                    log(f"    GAS-DRO {tag}: val {val:.5f} avg {np.mean(list(test.values())):.5f} | adv loss "
                        f"{g['adversarial_loss']:.5f} vs train loss {g['train_loss']:.5f}; J {g['final_J']:.4f} "
                        f"(budget {budget:.4f}, mu {g['final_mu']:.3f})")
            pick = (min if better == "min" else max)(grid, key=lambda t: grid[t]["validation"])
            results[name] = {**grid[pick], "selected": pick, "grid": grid}
            results[name]["step_bytes"] = next(iter(grid.values())).get("step_bytes")
            predictors[name] = ws[pick]
        log(f"  {name:8s} val {results[name]['validation']:.5f} avg "
            f"{np.mean(list(results[name]['test'].values())):.5f} ({results[name]['seconds']:.1f} s)")
    return results, predictors


def run_carbon(cfg, key, data, methods=METHODS, log=print):
    """Every method on the carbon task; per test set MSE, average, worst, validation MSE
    (held-out end of the training years), time, step memory."""
    t0 = time.perf_counter()
    setup = carbon_setup(key, data, **cfg["carbon"])
    log(f"carbon setup {time.perf_counter() - t0:.1f} s; J0={setup.info['J0']:.4f}")

    def scores(w):
        return evaluate(setup.loss_fn, w, {"v": setup.validation})["v"], evaluate(setup.loss_fn, w, setup.tests)

    results, _ = train_all(cfg, key, setup, cfg["carbon_steps"], methods, scores, "min", 100, log, cfg["deltas"])
    for r in [*results.values(), *results.get("GAS-DRO", {}).get("grid", {}).values()]:
        r["mse"] = r.pop("test")
        r.update(summary(r["mse"]))
    return setup, results


def run_digits(cfg, key, data, methods=METHODS, log=print):
    t0 = time.perf_counter()
    setup = digits_setup(key, data, **cfg["digits"])
    log(f"digits setup {time.perf_counter() - t0:.1f} s; J0={setup.info['J0']:.4f}")

    def acc(w, x, y):
        return accuracy(setup.model, w, x, np.argmax(y, -1))

    def scores(w):
        return acc(w, *setup.validation), {k: acc(w, x, y) for k, (x, y) in setup.tests.items()}

    deltas = cfg.get("digits_deltas") or (round(setup.budget - setup.info["J0"], 6),)
    results, predictors = train_all(cfg, key, setup, cfg["digits_steps"], methods, scores, "max", 200, log, deltas)
    for r in [*results.values(), *results.get("GAS-DRO", {}).get("grid", {}).values()]:
        r["accuracy"] = r.pop("test")
        r.update(summary(r["accuracy"], worst=min))
    return setup, results, predictors


def ablate_budget(results):
    """GAS-DRO's test MSE against delta at the selected nominal weight (read off the grid)."""
    gas = results["GAS-DRO"]
    return {str(g["delta"]): {"average": g["average"], "worst": g["worst"], "validation": g["validation"]}
            for g in gas["grid"].values() if g["nominal_weight"] == gas["nominal_weight"]}


def ablate_capacity(cfg, key, setup, hiddens, lam=0.0, delta=None, log=print):
    out = {}
    budget = setup.budget if delta is None else setup.info["J0"] + delta
    for h in hiddens:
        model = LSTMForecaster(hidden=h)
        loss = forecast_loss(model)
        params = model.init(jax.random.fold_in(key, h), jnp.asarray(setup.train[0, :-1]))
        settings = settings_for(cfg, cfg["carbon_steps"], budget, lam)
        for name in ("ML", "GAS-DRO"):
            w, _, _ = train_method(name, jax.random.fold_in(key, 400 + h), loss, params, setup.train,
                                   setup.resources, settings)
            out[f"{name}/{h}"] = summary(evaluate(loss, w, setup.tests))
            log(f"  hidden={h} {name}: avg {out[f'{name}/{h}']['average']:.5f}")
    return out


def ablate_noise(key, setup, predictors, base_tests):
    """Accuracy of each trained classifier on USPS test under each corruption level."""
    x, y = base_tests["USPS"]
    out = {}
    for kind, levels in LEVELS.items():
        for level in levels:
            xc = np.asarray(dro.corrupt(jax.random.fold_in(key, int(100 * level)), jnp.asarray(x), kind, level))
            for name, w in predictors.items():
                out.setdefault(name, {}).setdefault(kind, {})[str(level)] = accuracy(setup.model, w, xc, np.argmax(y, -1))
    return out


def run_seed(cfg, seed, args, log=print):
    """Every requested part for one seed; returns that seed's report."""
    key = jax.random.key(seed)
    report = {}
    if "carbon" in args.parts:
        setup, res = run_carbon(cfg, key, args.data, args.methods, log)
        report["carbon"] = {"results": res, "info": setup.info}
        if "ablations" in args.parts:
            if "GAS-DRO" in res:
                report["ablation_budget"] = ablate_budget(res)
            sel = res.get("GAS-DRO", {})
            report["ablation_capacity"] = ablate_capacity(cfg, key, setup, cfg["hiddens"],
                                                          sel.get("nominal_weight", 0.0), sel.get("delta"), log)
    if "digits" in args.parts:
        setup, res, preds = run_digits(cfg, jax.random.fold_in(key, 1), args.data, args.methods, log)
        report["digits"] = {"results": res, "info": setup.info}
        if "ablations" in args.parts:
            keep = {n: preds[n] for n in ("ML", "GAS-DRO") if n in preds}
            report["ablation_noise"] = ablate_noise(jax.random.fold_in(key, 2), setup, keep, setup.tests)
    return report


def task_table(task, per_seed):
    """Rows per test set (mean over seeds) and the summary rows (mean +- sd over seeds)."""
    metric, _ = TASKS[task]
    runs = [r[task]["results"] for r in per_seed.values()]
    names = list(runs[0])
    sets = list(runs[0][names[0]][metric])
    rows = [{"": s, **{n: float(np.mean([r[n][metric][s] for r in runs])) for n in names}} for s in sets]
    for field in ("validation", "average", "worst", "seconds"):
        cells = {}
        for n in names:
            mean, sd = harness.mean_sd([r[n][field] for r in runs])
            cells[n] = f"{mean:.4g} ± {sd:.2g}" if len(runs) > 1 else mean
        rows.append({"": field, **cells})
    mem = [runs[0][n].get("step_bytes") for n in names]
    if all(m is not None for m in mem):
        rows.append({"": "step MiB", **{n: m / 2**20 for n, m in zip(names, mem)}})
    return harness.markdown_table(rows, ["", *names])


def sign_tests(task, per_seed):
    """GAS-DRO against every other method on the per-seed average: wins, losses, p-value."""
    _, better = TASKS[task]
    runs = [r[task]["results"] for r in per_seed.values()]
    if "GAS-DRO" not in runs[0]:
        return []
    rows = []
    for name in runs[0]:
        if name == "GAS-DRO":
            continue
        diff = [r["GAS-DRO"]["average"] - r[name]["average"] for r in runs]
        wins = sum((d < 0) if better == "min" else (d > 0) for d in diff)
        losses = sum((d > 0) if better == "min" else (d < 0) for d in diff)
        rows.append({"baseline": name, "GAS-DRO wins": wins, "losses": losses,
                     "sign test p": harness.sign_test(wins, losses)})
    return rows


def grid_table(task, results):
    gas = results.get("GAS-DRO")
    if gas is None:
        return ""
    rows = [{"config": tag, **{k: g[k] for k in ("validation", "average", "worst", "adversarial_loss",
                                                   "train_loss", "final_J", "budget")}}
            for tag, g in gas["grid"].items()]
    return (f"GAS-DRO grid on {task} (selected on validation: {gas['selected']})\n"
            + harness.markdown_table(rows, list(rows[0])))


def plot(per_seed, out):
    first = next(iter(per_seed.values()))
    panels = [(k, {"mse": "MSE"}.get(m, m)) for k, (m, _) in TASKS.items() if k in first]
    extra = [k for k in ("ablation_budget", "ablation_noise") if k in first]
    fig, axes = harness.figure(1, len(panels) + len(extra), figsize=(5 * (len(panels) + len(extra)), 4),
                               squeeze=False)
    axes = list(axes[0])
    for (task, label), ax in zip(panels, axes):
        runs = [r[task]["results"] for r in per_seed.values()]
        names = list(runs[0])
        xs = np.arange(len(names))
        for shift, field in ((-0.2, "average"), (0.2, "worst")):
            stats = [harness.mean_sd([r[n][field] for r in runs]) for n in names]
            ax.bar(xs + shift, [m for m, _ in stats], 0.4, yerr=[s for _, s in stats], label=field)
        ax.set_xticks(xs, names, rotation=45, ha="right")
        ax.set_title(f"{task}: test {label} under shift")
        ax.legend()
    rest = axes[len(panels):]
    if "ablation_budget" in first:
        ax = rest.pop(0)
        d = first["ablation_budget"]
        ax.plot([float(k) for k in d], [v["average"] for v in d.values()], "o-", label="average")
        ax.plot([float(k) for k in d], [v["worst"] for v in d.values()], "s-", label="worst")
        ax.set_xscale("log"), ax.set_xlabel("budget delta (epsilon - J0)"), ax.set_ylabel("MSE")
        ax.set_title("carbon: GAS-DRO vs budget (first seed)"), ax.legend()
    if "ablation_noise" in first:
        ax = rest.pop(0)
        for name, kinds in first["ablation_noise"].items():
            for kind, vals in kinds.items():
                ax.plot(range(len(vals)), list(vals.values()), marker="o", label=f"{name} {kind}")
        ax.set_xlabel("corruption level index"), ax.set_ylabel("accuracy")
        ax.set_title("digits: accuracy vs corruption level (first seed)"), ax.legend(fontsize=6)
    harness.save_figure(fig, out, "gas_dro")


def main(argv=None):
    p = harness.parser(__doc__, sizes=tuple(SIZES), out="results/gas_dro")
    p.add_argument("--data", default=os.environ.get(
        "TAILJAX_DATA", str(pathlib.Path(__file__).resolve().parents[2] / ".." / "shared" / "data")))
    p.add_argument("--parts", nargs="*", default=["carbon", "digits", "ablations"],
                   choices=["carbon", "digits", "ablations"])
    p.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--lams", nargs="*", type=float, default=None,
                   help="GAS-DRO nominal weights to try (default: the size's grid)")
    p.add_argument("--deltas", nargs="*", type=float, default=None,
                   help="carbon budgets epsilon - J0 to try (default: the size's grid)")
    args = p.parse_args(argv)
    cfg = dict(SIZES[args.size])
    cfg.update({k: tuple(v) for k, v in (("lams", args.lams), ("deltas", args.deltas)) if v})
    report = {"size": args.size, "seeds": harness.seeds(args),
              "settings": {"carbon_steps": cfg["carbon_steps"], "digits_steps": cfg["digits_steps"],
                           "gas": cfg["gas"]._asdict(), "lams": cfg["lams"], "deltas": cfg["deltas"],
                           "digits_deltas": cfg.get("digits_deltas"), "carbon": cfg["carbon"],
                           "digits": cfg["digits"]},
              "per_seed": {}}
    for seed in report["seeds"]:
        print(f"== seed {seed}")
        report["per_seed"][str(seed)] = run_seed(cfg, seed, args)
        harness.write_json(args.out, "gas_dro", report)  # after every seed: a cut run keeps its seeds
    stats = getattr(jax.devices()[0], "memory_stats", lambda: None)()
    if stats and "peak_bytes_in_use" in stats:
        report["device_peak_bytes"] = int(stats["peak_bytes_in_use"])
    per_seed = report["per_seed"]
    tables = []
    first = next(iter(per_seed.values()))
    titles = {"carbon": "carbon intensity, test MSE (train ERCOT 2021-22)", "digits": "digits, test accuracy (train USPS)"}
    for task in TASKS:
        if task not in first:
            continue
        tables.append(f"{titles[task]}, {len(per_seed)} seed(s)\n" + task_table(task, per_seed))
        signs = sign_tests(task, per_seed)
        report.setdefault("sign_tests", {})[task] = signs
        if len(per_seed) > 1 and signs:
            tables.append(f"{task}: GAS-DRO against each method, per-seed average\n"
                          + harness.markdown_table(signs, list(signs[0]), {"sign test p": ".3g"}))
        tables.append(grid_table(task, first[task]["results"]))
    if "carbon" in first:
        w1 = first["carbon"]["info"]["wasserstein"]
        tables.append("W1 to training set: " + ", ".join(f"{k} {v:.3f}" for k, v in w1.items()))
    harness.write_json(args.out, "gas_dro", report)
    plot(per_seed, args.out)
    print("\n\n".join(t for t in tables if t))
    return report


if __name__ == "__main__":
    main()

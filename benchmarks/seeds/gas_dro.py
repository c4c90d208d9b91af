"""GAS-DRO experiments (Wen & Yang) that survive a fair look: carbon-intensity forecasting
under zone shift (Table 1) under two labelled protocols, the same predictors under Gaussian,
Perlin and cutout corruption of the series (Tables 2-4), generator capacity and the VAE
variant (Table 5), the budget curve (Fig. 5), and digits under shift (Table 7, in
``benchmarks/seeds/gas_dro_digits.py``, run here with ``--parts digits``).

    python -m benchmarks.seeds.gas_dro --size small --seeds 5 --protocols today paper
    python -m benchmarks.seeds.gas_dro --size paper --seeds 5 --parts carbon corruptions capacity budget digits

Protocols (``benchmarks.setups.dro.carbon``): ``today`` trains on ERCOT 2021-22 with every
series scaled by the training range; ``paper`` trains on CAISO 2023-24 (stand-in for BANC)
with per-set min-max scaling, the small-data regime, the stacked LSTM (128, 64) and a 1-D
UNet noise network. Both hold the GB zone out of the tests as the out-of-distribution
validation set (``--select ood``; ``--select id`` uses the held-out end of the training years).
Every method (ML, DML, KL-DRO, W-DRO, DRAGEN, P-DRO, GAS-DRO, and GAS-DRO fine-tuned from the
converged ML predictor, at the (lambda, delta) GAS-DRO's validation chose) trains with early
stopping on that validation MSE and has its hyper-parameters (KL-DRO's rho, W-DRO's gamma,
DRAGEN's gamma, P-DRO's tau, GAS-DRO's (lambda, delta)) chosen on the same validation MSE,
with the predictor's Adam step from the size's ``lrs`` (``--lrs``; paper size 3e-4, 1e-3,
3e-3; small size 1e-3 alone). Persistence and the 24-hour seasonal-naive forecast are
reference rows. The inner problem is the paper's by default (earlier reverse
steps frozen at theta_0, J over t <= T' with stratified t, PPO reference theta_0 with the
initial set drawn once per InnerMax, eta = 0.01); each is an option, as is the adversary's
Adam step (``--gas-lr``, the paper's 1e-5 by default). The report says per
test set and on average where GAS-DRO wins, ties or loses against the best converged
baseline and against persistence (sign test over seeds). Writes ``gas_dro.json``,
``gas_dro.md`` and ``gas_dro.png`` under ``--out``. Data: ``--data`` or $TAILJAX_DATA. One seed's tables can be
split over processes (``--methods``, ``--budget-deltas``, ``--capacity``; ``--parts capacity``
alone skips the carbon set-up) and gathered by ``--merge``. A run cut short goes on with
``--resume``: the seeds and protocols in ``OUT/gas_dro.json`` are kept (same settings, parts,
methods and capacity variants, else an error names what differs), a finished fit's record
(and the predictor of each grid's best finished fit) is read back from ``OUT/partial/``, and
an unfinished fit goes on from its training checkpoint there (its ``seconds`` then count this
process's part; the nominal generators are pre-trained again, from the same key).
"""

from __future__ import annotations

import os
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _harness as harness
from benchmarks.setups.dro import (
    BASELINES,
    METHODS,
    MethodSettings,
    carbon_setup,
    compare,
    comparison_table,
    scorer,
    seed_table,
    train_method,
    verdict,
    with_learning_rates,
)
from benchmarks.setups.dro.resume import FitCheckpoints, finished
from tailjax import dro

GAS = dro.GasDroConfig(dual_lr=0.01, advantages="center")
SIZES = {
    "smoke": dict(  # seconds: checks that every part runs, numbers mean nothing
        carbon=dict(num_steps=10, last_steps=3, generator_steps=20, vae_steps=20, j_batch=64),
        protocol=dict(today=dict(stride=48, test_stride=240, noise_features=(16,)),
                      paper=dict(stride=80, test_stride=240, predictor=(8, 4), noise_features=(8, 8))),
        settings=dict(steps=6, eval_every=3, patience=1, batch_size=32, wdro_steps=1, dragen_steps=1),
        gas_steps=4, gas=GAS._replace(inner_steps=1, epochs=1, num_samples=8, outer_samples=16),
        grids={"KL-DRO": ("kl_radius", (0.1,)), "W-DRO": ("wdro_penalty", (10.0,)),
               "DRAGEN": ("dragen_penalty", (1.0,)), "P-DRO": ("pdro_kl_weight", (0.1,))},
        lams=(0.0,), deltas=(0.01,), budget_deltas=(0.01, 0.1), capacity=((8,),),
        levels={"gaussian": (0.1,), "perlin": (0.1,), "cutout": (4,)},
    ),
    "small": dict(  # CPU, 2 shared cores: about 5-10 minutes per seed and protocol. The paper protocol
        # runs here with a (32, 16) stacked LSTM (the (128, 64) one took 74 ms a step) and the MLP
        # noise network (GAS-DRO with the 1-D UNet took over 10 minutes a run): paper size has both
        carbon=dict(num_steps=50, generator_steps=1000, vae_steps=500, j_batch=512),
        protocol=dict(today=dict(stride=8, test_stride=48, noise_features=(128, 128)),
                      paper=dict(predictor=(32, 16), noise_net="mlp", noise_features=(128, 128))),
        # 6,000 updates: at 1,500 early stopping had not stopped ML on most seeds (paper protocol)
        settings=dict(steps=6000, eval_every=75, patience=6, batch_size=64, wdro_steps=2, dragen_steps=2),
        gas_steps=300, gas=GAS._replace(inner_steps=1, epochs=3, num_samples=32, outer_samples=64, outer_steps=5),
        grids={"KL-DRO": ("kl_radius", (0.1, 1.0)), "W-DRO": ("wdro_penalty", (10.0,)),
               "DRAGEN": ("dragen_penalty", (1.0,)), "P-DRO": ("pdro_kl_weight", (0.1, 1.0))},
        lams=(0.0,), deltas=(0.05,), budget_deltas=(0.001, 0.005, 0.02, 0.05, 0.2),
        capacity=((16, 32), (32, 64, 64)), levels={"gaussian": (0.05, 0.1), "perlin": (0.1, 0.2), "cutout": (4, 8)},
    ),
    "paper": dict(
        carbon=dict(num_steps=500, generator_steps=10_000, vae_steps=5_000, j_batch=1024),
        protocol=dict(today=dict(), paper=dict()),
        settings=dict(steps=20_000, eval_every=200, patience=10, batch_size=64, wdro_steps=10, dragen_steps=10),
        gas_steps=4000, gas=GAS._replace(inner_steps=10, epochs=10, num_samples=64, outer_samples=64, outer_steps=5),
        grids={"KL-DRO": ("kl_radius", (0.01, 0.1, 1.0)), "W-DRO": ("wdro_penalty", (1.0, 10.0, 100.0)),
               "DRAGEN": ("dragen_penalty", (0.1, 1.0, 10.0)), "P-DRO": ("pdro_kl_weight", (0.01, 0.1, 1.0))},
        lams=(0.0, 0.5), deltas=(0.005, 0.02, 0.05), budget_deltas=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2),
        lrs=(3e-4, 1e-3, 3e-3),  # every predictor's Adam step, chosen on validation
        capacity=((32, 64, 64, 64), (64, 128, 128, 128), (128, 256, 256, 256)),
        levels={"gaussian": (0.02, 0.05, 0.1, 0.2), "perlin": (0.05, 0.1, 0.2, 0.4), "cutout": (2, 4, 8, 12)},
    ),
}
# GPU: the small size's budgets with the paper protocol's networks (stacked LSTM (128, 64), 1-D
# UNet noise network (128, 256, 256, 256)), which the 2-core CPU could not run; Table 5 with the
# paper's two narrower UNets (its widest is the main run's)
SIZES["small_paper_nets"] = dict(SIZES["small"], protocol=dict(SIZES["small"]["protocol"], paper=dict()),
                                 capacity=((32, 64, 64, 64), (64, 128, 128, 128)))
INNER = ("frozen_prefix", "reconstruction_steps", "policy_std")


def summarise(mse: dict[str, float]) -> dict[str, float]:
    return {"average": float(np.mean(list(mse.values()))), "worst": float(max(mse.values()))}


def grid_values(tag):
    """``"lam=0.0,delta=0.05,lr=0.001"`` -> ``{"lam": 0.0, "delta": 0.05, "lr": 0.001}``."""
    return {k: float(v) for k, v in (part.split("=") for part in tag.split(",") if part)}


def train_grid(cfg, name, key, setup, val, tests, init=None, log=print, gas_grid=None, lr=None, overrides=None,
               fits=None, part="carbon", start=None):
    """Train method ``name`` at every value of its grid (times the size's learning rates, or
    ``lr`` alone) with early stopping on ``val``; returns the record of the value with the best
    validation MSE and the predictor. ``overrides`` replaces fields of every setting. With
    ``fits`` (:class:`FitCheckpoints`) each fit checkpoints as ``part`` (``start``: what
    ``init`` is) and goes on from its checkpoint; a finished fit keeps its record, the grid's
    best finished fit its predictor, and neither trains again when resumed."""
    base = MethodSettings(**cfg["settings"], gas=cfg["gas"]._replace(budget=setup.budget),
                          gas_data_batch=setup.info["j_batch"])  # the J batch whose sd info["J_sd"] reports
    base = base._replace(**(overrides or {}))
    if name.startswith("GAS-DRO"):
        base = base._replace(steps=cfg["gas_steps"], eval_every=max(1, cfg["gas_steps"] // 20))
        grid = {f"lam={lam},delta={d}": base._replace(gas=base.gas._replace(budget=setup.info["J0"] + d,
                                                                             nominal_weight=lam))
                for lam, d in (gas_grid or [(lam, d) for lam in cfg["lams"] for d in cfg["deltas"]])}
    elif name in cfg["grids"]:
        field, values = cfg["grids"][name]
        grid = {f"{field}={v}": base._replace(**{field: v}) for v in values}
    else:
        grid = {"": base}
    lrs = (lr,) if lr is not None else cfg.get("lrs", (base.learning_rate,))
    if len(lrs) > 1 or lr is not None:  # the predictor's learning rate, chosen on validation with the grid
        grid = with_learning_rates(grid, lrs)
    method = "GAS-DRO" if name.startswith("GAS-DRO") else name
    w0 = setup.params if init is None else init

    def fit(tag, settings):
        w, cost, hist = train_method(method, key, setup.loss_fn, w0, setup.train, setup.resources, settings,
                                     validation=val,
                                     checkpoint_path=None if fits is None else fits.path(part, name, tag),
                                     run=None if fits is None else fits.describe(part, name, tag, start))
        mse = tests(w)
        rec = {"mse": mse, **summarise(mse), "validation": min(v for _, v in cost["evaluations"]), **cost}
        if method == "GAS-DRO":
            tail = max(1, len(hist["mu"]) // 10)
            rec.update({k: float(np.nanmean(hist[h][-tail:])) for k, h in
                        (("adversarial_loss", "adversarial_loss"), ("final_J", "reconstruction"), ("final_mu", "mu"),
                         ("path_kl", "path_kl"), ("clip_fraction", "clip_fraction"))},
                       budget=settings.gas.budget)
        log(f"    {name} {tag}: val {rec['validation']:.5f} avg {rec['average']:.5f} steps {cost['steps']} "
            f"(best {cost['best_step']}) {cost['seconds']:.0f} s")
        return w, rec

    runs, predictors = {}, {}
    for tag, settings in grid.items():
        if fits is not None and (rec := fits.record(part, name, tag, start)) is not None:
            runs[tag] = rec
            log(f"    {name} {tag}: kept from {fits.folder}, val {rec['validation']:.5f}")
            continue
        predictors[tag], runs[tag] = fit(tag, settings)
        if fits is not None:  # the record first: a stop in between costs a retraining, never a wrong predictor
            fits.save_record(part, name, tag, start, runs[tag])
            if tag == min(runs, key=lambda t: runs[t]["validation"]):
                fits.save_best(part, name, tag, start, predictors[tag])
    pick = min(runs, key=lambda t: runs[t]["validation"])
    if pick not in predictors:  # finished in an earlier process: its kept predictor, else trained again
        kept = fits.best(part, name, pick, start, w0)
        predictors[pick] = kept if kept is not None else fit(pick, grid[pick])[0]
    return {**runs[pick], "selected": pick, "grid": runs}, predictors[pick]


def corrupted_scores(key, setup, predictors, levels):
    """Test MSE (average over sets) of each predictor and of persistence when the inputs of
    every test window are corrupted (Tables 2-4)."""
    out = {}
    for i, (kind, values) in enumerate(levels.items()):
        for j, level in enumerate(values):
            k = jax.random.fold_in(key, 100 * i + j)
            sets = {s: np.asarray(dro.corrupt_series(jax.random.fold_in(k, n), jnp.asarray(x), kind, level))
                    for n, (s, x) in enumerate(setup.tests.items())}
            tag = f"{kind}={level}"
            out[tag] = {"persistence": float(np.mean([np.mean((x[:, -1] - x[:, -2]) ** 2) for x in sets.values()]))}
            score = scorer(setup.loss_fn, sets)
            for name, w in predictors.items():
                out[tag][name] = float(np.mean(list(score(w).values())))
    return out


def run_protocol(cfg, key, protocol, args, log=print, fits=None):
    report = {}
    if {"carbon", "corruptions", "budget"} & set(args.parts):
        report = carbon_parts(cfg, key, protocol, args, log, fits)
    if "capacity" in args.parts:
        report["capacity"] = capacity(cfg, key, protocol, args, log, fits)
    return report


def budget_choice(cfg, results):
    """(lambda, learning rate) of the budget curve: GAS-DRO's selected ones, or the size's
    only lambda (and learning rate) when GAS-DRO was not trained in this run."""
    if "GAS-DRO" in results:
        sel = grid_values(results["GAS-DRO"]["selected"])
        return sel["lam"], sel.get("lr")
    lrs = cfg.get("lrs") or (None,)
    if len(cfg["lams"]) == 1 and len(lrs) == 1:
        return cfg["lams"][0], lrs[0]
    raise ValueError("--parts budget needs GAS-DRO in --methods to choose lambda and the learning rate "
                     f"(grids lams={cfg['lams']}, lrs={cfg.get('lrs')})")


def carbon_parts(cfg, key, protocol, args, log=print, fits=None):
    """The carbon table of ``args.methods`` (with corruptions and the budget curve when asked)."""
    t0 = time.perf_counter()
    inner = {k: getattr(args, k) for k in INNER}
    setup = carbon_setup(key, args.data, protocol, **cfg["carbon"], **cfg["protocol"][protocol], **inner)
    info = setup.info
    log(f"[{protocol}] setup {time.perf_counter() - t0:.0f} s: {info['train_windows']} train windows, "
        f"J0 {info['J0']:.4f}, J sd {info['J_sd']:.4f}, T' {info['last_steps']}")
    select = setup.ood_validation if args.select == "ood" else setup.validation
    val = scorer(setup.loss_fn, select)
    tests = scorer(setup.loss_fn, setup.tests)
    results, predictors = {}, {}
    for name in args.methods:
        k = jax.random.fold_in(key, 100 + METHODS.index(name))
        results[name], predictors[name] = train_grid(cfg, name, k, setup, val, tests, log=log, fits=fits)
    if {"ML", "GAS-DRO"} <= set(results):  # GAS-DRO as fine-tuning of the converged ML predictor, at the
        sel = grid_values(results["GAS-DRO"]["selected"])  # (lambda, delta) GAS-DRO's validation chose
        results["GAS-DRO (FT)"], predictors["GAS-DRO (FT)"] = train_grid(
            cfg, "GAS-DRO (FT)", jax.random.fold_in(key, 199), setup, val, tests, init=predictors["ML"], log=log,
            gas_grid=[(sel["lam"], sel["delta"])], lr=sel.get("lr"), fits=fits,
            start=f"ML {results['ML']['selected']}")
    for ref, mse in info["reference"].items():
        results[ref] = {"mse": mse, **summarise(mse), "validation": info.get("reference_validation", {}).get(ref)}
    report = {"results": results, "info": info}
    if "corruptions" in args.parts:
        report["corruptions"] = corrupted_scores(jax.random.fold_in(key, 7), setup, predictors, cfg["levels"])
    if "budget" in args.parts:
        lam, lr = budget_choice(cfg, results)
        rec, _ = train_grid(cfg, "GAS-DRO", jax.random.fold_in(key, 100 + METHODS.index("GAS-DRO")), setup, val,
                            tests, log=log, gas_grid=[(lam, d) for d in cfg["budget_deltas"]], lr=lr, fits=fits,
                            part="budget")
        report["budget"] = {str(round(g["budget"] - info["J0"], 6)): {k: g[k] for k in ("average", "worst", "validation",
                                                                                "final_J", "final_mu", "path_kl")}
                            for g in rec["grid"].values()}
    return report


def capacity(cfg, key, protocol, args, log=print, fits=None):
    """Table 5: GAS-DRO (lambda 0, the size's first delta) with noise networks of several
    widths (MLP widths under ``today``, 1-D UNet widths under ``paper``) and with the VAE
    ambiguity set. The VAE row's controls: ``DML-VAE``, DML (ERM on the data plus as many
    draws of the nominal VAE) with DML's own grid and early stopping; and the frozen control of
    any GAS-DRO row (``VAE-frozen``, ``(32, 64, 64, 64, "frozen")``): the row's run (same key and
    schedule) with the adversary's learning rate 0, so that the predictor trains on fresh draws
    of the nominal generator alone."""
    out = {}
    inner = {k: getattr(args, k) for k in INNER}
    variants = {"VAE": ("VAE", dict(vae_ambiguity=True)), "DML-VAE": ("DML on VAE samples", dict(vae_ambiguity=True)),
                "VAE-frozen": ("VAE, adversary frozen", dict(vae_ambiguity=True))}
    for w in cfg["capacity"]:
        frozen = w == "VAE-frozen" or (isinstance(w, tuple) and w[-1] == "frozen")
        if isinstance(w, tuple) and frozen:
            w = w[:-1]
            tag, extra = f"DDPM {w}, adversary frozen", dict(noise_features=w)
        else:
            tag, extra = variants.get(w, (f"DDPM {w}", dict(noise_features=w)))
        kw = {**cfg["carbon"], **cfg["protocol"][protocol], **extra}
        setup = carbon_setup(key, args.data, protocol, baselines=w == "DML-VAE", **kw, **inner)
        select = setup.ood_validation if args.select == "ood" else setup.validation
        val, tests = scorer(setup.loss_fn, select), scorer(setup.loss_fn, setup.tests)
        if w == "DML-VAE":
            rec, _ = train_grid(cfg, "DML", jax.random.fold_in(key, 100 + METHODS.index("DML")), setup, val, tests,
                                log=log, fits=fits, part=f"capacity {tag}")
        else:
            rec, _ = train_grid(cfg, "GAS-DRO", jax.random.fold_in(key, 300), setup, val, tests, log=log,
                                gas_grid=[(0.0, cfg["deltas"][0])],
                                overrides=dict(gas_learning_rate=0.0) if frozen else None, fits=fits,
                                part=f"capacity {tag}")
        out[tag] = {k: rec[k] for k in ("mse", "average", "worst", "validation", "final_J", "final_mu", "path_kl") if k in rec}
        out[tag].update(J0=setup.info["J0"], J_sd=setup.info["J_sd"])
    return out


def _capacity_variant(value):
    """A --capacity value: "VAE", "DML-VAE", "VAE-frozen", widths "32,64" (a tuple of ints) or
    "32,64-frozen" (the tuple ending in "frozen")."""
    if value in ("VAE", "DML-VAE", "VAE-frozen"):
        return value
    widths, frozen = (value[: -len("-frozen")], True) if value.endswith("-frozen") else (value, False)
    return (*(int(w) for w in widths.split(",")), *(("frozen",) if frozen else ()))


def write_report(report, out):
    lines = [f"# GAS-DRO benchmark ({report['size']}, {len(report['seeds'])} seeds: {report['seeds']})",
             f"Command: `{report['command']}`. Selection and early stopping on {report['select']} validation "
             "(ood: the GB zone, held out of the tests; id: the end of each training year), the same rule for every "
             "method's hyper-parameters. Verdicts: sign test over seeds, p <= 0.0625 (5 of 5 seeds) for a win or loss, "
             "else tie; the best converged baseline is the one with the lowest mean test average."]
    for protocol in report["protocols"]:
        done = {s: r[protocol] for s, r in report["per_seed"].items() if protocol in r}  # a cut run keeps its seeds
        if not done:
            continue
        if not all("results" in r for r in done.values()):  # runs of Table 5 alone
            lines += [f"\n## Carbon, protocol `{protocol}`, {len(done)} seeds ({list(done)})",
                      *extra_tables(done, protocol)]
            continue
        runs = [r["results"] for r in done.values()]
        info = next(iter(done.values()))["info"]
        names = [n for n in (*METHODS, "GAS-DRO (FT)", "persistence", "seasonal naive") if n in runs[0]]
        lines += [f"\n## Carbon, protocol `{protocol}`: test MSE, mean ± sd over {len(runs)} seeds ({list(done)})",
                  f"Train {info['train_zone']} {info['train_years']}, scaling {info['scaling']}, "
                  f"{info['train_windows']} training windows, T' {info['last_steps']}, J sd {info['J_sd']:.4g} "
                  f"(J0 {info['J0']:.4g}; deltas {report['settings']['deltas']}).",
                  seed_table(runs, names)]
        sel = {n: [r[n].get("selected") for r in runs] for n in names if "selected" in runs[0][n]}
        lines.append("Selected hyper-parameters per seed: " + "; ".join(f"{n}: {v}" for n, v in sel.items()))
        lines.append("W1 (scaled values, train vs set): " + ", ".join(f"{k} {v:.3f}" for k, v in info["wasserstein"].items()))
        for ours in ("GAS-DRO", "GAS-DRO (FT)"):
            if ours in runs[0] and any(b in runs[0] for b in BASELINES):
                comp = compare(runs, ours)
                report.setdefault("verdicts", {}).setdefault(protocol, {})[ours] = comp
                lines += [f"\n{ours} against the best converged baseline and persistence ({protocol})",
                          comparison_table(comp, ours)]
        lines += extra_tables(done, protocol)
    text = "\n".join(lines)
    (pathlib.Path(out) / "gas_dro.md").write_text(text + "\n")
    return text


def extra_tables(done, protocol):
    """Corruption (Tables 2-4), budget (Fig. 5) and capacity (Table 5) tables, when run."""
    lines, seeds = [], list(done.values())
    if "corruptions" in seeds[0]:
        tags = list(seeds[0]["corruptions"])
        names = list(seeds[0]["corruptions"][tags[0]])
        rows = []
        for tag in tags:
            row = {"corruption": tag}
            for n in names:
                m, sd = harness.mean_sd([r["corruptions"][tag][n] for r in seeds])
                row[n] = f"{m:.4g} ± {sd:.2g}"
            if "GAS-DRO" in names:
                base = [b for b in BASELINES if b in names]
                best = min(base, key=lambda b: np.mean([r["corruptions"][tag][b] for r in seeds]))
                for opp in (best, "persistence"):
                    v = verdict([r["corruptions"][tag]["GAS-DRO"] for r in seeds],
                                [r["corruptions"][tag][opp] for r in seeds])
                    row[f"GAS-DRO vs {'best' if opp == best else opp}"] = f"{v['verdict']} ({v['wins']}-{v['losses']}; {opp})"
            rows.append(row)
        lines += [f"\nCorrupted test inputs ({protocol}): average test MSE over sets, mean ± sd over seeds",
                  harness.markdown_table(rows, list(rows[0]))]
    for part, title in (("budget", "GAS-DRO against the budget delta"), ("capacity", "Table 5: generator capacity")):
        have = [r[part] for r in seeds if part in r]
        keys = sorted({k for h in have for k in h}, key=lambda k: float(k) if part == "budget" else k)
        rows = []
        for k in keys:  # mean ± sd over the seeds that ran this value
            runs = [h[k] for h in have if k in h]
            rows.append({part: k, "seeds": len(runs),
                         **{f: "{:.4g} ± {:.2g}".format(*harness.mean_sd([r[f] for r in runs]))
                            for f in ("average", "worst", "validation", "J0", "final_J", "final_mu", "path_kl")
                            if f in runs[0]}})
        if rows:  # a control row (DML on VAE samples) has no dual variable or J columns
            columns = list(dict.fromkeys(c for r in rows for c in r))
            lines += [f"\n{title} ({protocol})", harness.markdown_table(rows, columns)]
    return lines


def plot(report, out):
    protocols = report["protocols"]
    fig, axes = harness.figure(1, len(protocols) + 1, figsize=(6 * (len(protocols) + 1), 4), squeeze=False)
    for ax, protocol in zip(axes[0], protocols):
        runs = [r[protocol]["results"] for r in report["per_seed"].values() if "results" in r.get(protocol, {})]
        if not runs:
            continue
        names = list(runs[0])
        stats = [harness.mean_sd([r[n]["average"] for r in runs]) for n in names]
        ax.bar(range(len(names)), [m for m, _ in stats], yerr=[s for _, s in stats])
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.set_yscale("log"), ax.set_title(f"{protocol}: average test MSE over sets")
    ax = axes[0][-1]
    first = next(iter(report["per_seed"].values()))
    for protocol in protocols:
        for name in ("ML", "GAS-DRO"):
            ev = first.get(protocol, {}).get("results", {}).get(name, {}).get("evaluations")
            if ev:
                ax.plot([e[0] for e in ev], [e[1] for e in ev], label=f"{protocol} {name}")
    ax.set_xlabel("step"), ax.set_ylabel("validation MSE"), ax.set_yscale("log")
    ax.set_title("early stopping, first seed"), ax.legend(fontsize=7)
    harness.save_figure(fig, out, "gas_dro")


def merged_parts(old, new):
    """One seed's protocol report from two: the parts (results, corruptions, budget, capacity)
    are merged key by key, ``new`` winning; ``info`` (the set-up's) stays the first run's."""
    out = dict(old)
    for k, v in new.items():
        if k == "info":
            out.setdefault(k, v)
        else:
            out[k] = {**old[k], **v} if isinstance(v, dict) and isinstance(old.get(k), dict) else v
    return out


def merge(files, out):
    """One report from the JSON files of runs of other seeds, protocols or parts: a seed's
    protocol gathers the parts, methods, budgets and capacity variants of every file (later
    files win where two hold the same one)."""
    import json

    reports = [json.loads(pathlib.Path(f).read_text()) for f in files]
    report = dict(reports[0])
    report["per_seed"], report["protocols"], report["merged_from"] = {}, [], [str(f) for f in files]
    report["command"] = "; ".join(r["command"] for r in reports)
    for r in reports:
        for seed, parts in r["per_seed"].items():
            mine = report["per_seed"].setdefault(seed, {})
            for protocol, part in parts.items():
                mine[protocol] = merged_parts(mine.get(protocol, {}), part)
        report["protocols"] += [p for p in r["protocols"] if p not in report["protocols"]
                                and any(p in v for v in r["per_seed"].values())]
    report["seeds"] = sorted(int(s) for s in report["per_seed"])
    pathlib.Path(out).mkdir(parents=True, exist_ok=True)
    text = write_report(report, out)
    harness.write_json(out, "gas_dro", report)
    plot(report, out)
    print(text)
    return report


def main(argv=None):
    p = harness.parser(__doc__, sizes=("small", "paper", "smoke", "small_paper_nets"), out="results/gas_dro",
                       compile_cache=True)
    p.add_argument("--data", default=os.environ.get("TAILJAX_DATA"),
                   help="folder holding carbon_intensity/ and usps/ (default $TAILJAX_DATA, else the bundled subsets)")
    p.add_argument("--protocols", nargs="*", default=["today", "paper"], choices=["today", "paper"])
    p.add_argument("--parts", nargs="*", default=["carbon"], choices=["carbon", "corruptions", "budget", "capacity",
                                                                      "digits"])
    p.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--select", default="ood", choices=["ood", "id"])
    p.add_argument("--frozen-prefix", dest="frozen_prefix", type=int, default=1, help="1: steps T..T'+1 at theta_0")
    p.add_argument("--reconstruction-steps", dest="reconstruction_steps", default="last", choices=["last", "all"])
    p.add_argument("--policy-std", dest="policy_std", type=float, default=None)
    p.add_argument("--reference", default="nominal", choices=["nominal", "current"])
    p.add_argument("--dual-lr", dest="dual_lr", type=float, default=0.01)
    p.add_argument("--max-steps", dest="max_steps", type=int, default=None,
                   help="cap on every non-GAS-DRO predictor's updates (default: the size's)")
    p.add_argument("--deltas", nargs="*", type=float, default=None, help="GAS-DRO budgets eps - J0 (grid)")
    p.add_argument("--lams", nargs="*", type=float, default=None, help="GAS-DRO nominal weights (grid)")
    p.add_argument("--gas-lr", dest="gas_lr", type=float, default=None,
                   help="the generator's (adversary's) Adam step (default: the paper's 1e-5)")
    p.add_argument("--lrs", nargs="*", type=float, default=None,
                   help="predictor learning rates chosen on validation, for every method (default: the size's)")
    p.add_argument("--budget-deltas", dest="budget_deltas", nargs="*", type=float, default=None,
                   help="the budget curve's deltas (default: the size's)")
    p.add_argument("--capacity", nargs="*", default=None,
                   help="Table 5's variants: noise-network widths such as 32,64,64,64, VAE, the VAE row's "
                        "control DML-VAE (DML on the VAE's samples), and any GAS-DRO row with the adversary's "
                        "learning rate 0 (VAE-frozen, 32,64,64,64-frozen); default: the size's widths and VAE")
    p.add_argument("--merge", nargs="*", default=None,
                   help="JSON files of earlier runs (same size and settings) to merge into one report")
    p.add_argument("--resume", action="store_true",
                   help="keep the seeds and protocols of OUT/gas_dro.json (a run cut short, same settings) and "
                        "go on from the fits' checkpoints in OUT/partial/")
    args = p.parse_args(argv)
    harness.use_compile_cache(args)
    if args.merge:
        return merge(args.merge, args.out)
    args.frozen_prefix = bool(args.frozen_prefix)
    cfg = dict(SIZES[args.size])
    cfg["gas"] = cfg["gas"]._replace(reference=args.reference, dual_lr=args.dual_lr)
    if args.max_steps is not None:
        if args.max_steps < 1:
            p.error(f"--max-steps must be >= 1, got {args.max_steps}")
        cfg["settings"] = dict(cfg["settings"], steps=args.max_steps)
    if args.gas_lr is not None:
        if args.gas_lr <= 0:
            p.error(f"--gas-lr must be > 0, got {args.gas_lr}")
        cfg["settings"] = dict(cfg["settings"], gas_learning_rate=args.gas_lr)
    if args.deltas:
        cfg["deltas"] = tuple(args.deltas)
    if args.lams:
        cfg["lams"] = tuple(args.lams)
    if args.budget_deltas:
        cfg["budget_deltas"] = tuple(args.budget_deltas)
    try:
        cfg["capacity"] = (*cfg["capacity"], "VAE") if args.capacity is None else tuple(
            _capacity_variant(v) for v in args.capacity)
    except ValueError:
        p.error(f"--capacity takes widths such as 32,64,64,64 (or 32,64,64,64-frozen), VAE, DML-VAE or "
                f"VAE-frozen, got {args.capacity}")
    if args.lrs:
        if min(args.lrs) <= 0:
            p.error(f"--lrs must be > 0, got {args.lrs}")
        cfg["lrs"] = tuple(args.lrs)
    if "budget" in args.parts and "GAS-DRO" not in args.methods:
        try:  # refused before anything trains
            budget_choice(cfg, {})
        except ValueError as e:
            p.error(str(e))
    report = {"size": args.size, "seeds": harness.seeds(args), "protocols": args.protocols, "select": args.select,
              "command": "python -m benchmarks.seeds.gas_dro " + " ".join(argv if argv is not None else sys.argv[1:]),
              "settings": {"gas": cfg["gas"]._asdict(), "deltas": cfg["deltas"], "lams": cfg["lams"],
                           "grids": cfg["grids"], "lrs": cfg.get("lrs"), "settings": cfg["settings"],
                           "gas_steps": cfg["gas_steps"],
                           "carbon": cfg["carbon"], "inner": {k: getattr(args, k) for k in INNER}},
              "parts": args.parts, "methods": args.methods, "capacity": cfg["capacity"], "per_seed": {}}
    earlier = finished(pathlib.Path(args.out) / "gas_dro.json", report) if args.resume else {}
    carbon_wanted = {"carbon", "corruptions", "budget", "capacity"} & set(args.parts)
    for seed in report["seeds"]:
        print(f"== seed {seed}", flush=True)
        key = jax.random.key(seed)
        per = report["per_seed"][str(seed)] = dict(earlier.get(str(seed), {}))
        if carbon_wanted:
            for protocol in args.protocols:
                if protocol in per:
                    print(f"   {protocol}: kept from {args.out}/gas_dro.json", flush=True)
                    continue
                fits = FitCheckpoints.open(args.out, report, seed, protocol, resume=args.resume)
                per[protocol] = run_protocol(cfg, jax.random.fold_in(key, ["today", "paper"].index(protocol)),
                                             protocol, args, fits=fits)
                harness.write_json(args.out, "gas_dro", report)  # after every run: a cut run keeps its seeds
                fits.close()
        if "digits" in args.parts and "digits" not in per:
            from benchmarks.seeds.gas_dro_digits import run_digits

            per["digits"] = run_digits(args.size, jax.random.fold_in(key, 9), args.data, args.select)
            harness.write_json(args.out, "gas_dro", report)
    text = write_report(report, args.out) if carbon_wanted else ""
    harness.write_json(args.out, "gas_dro", report)
    if carbon_wanted:
        plot(report, args.out)
    print(text)
    return report


if __name__ == "__main__":
    main()

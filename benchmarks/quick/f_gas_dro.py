"""GAS-DRO headline in small form: carbon-intensity forecasting under zone shift, an LSTM
trained by ML (ERM) and by GAS-DRO (DDPM ambiguity set, the paper's inner problem: earlier
reverse steps frozen at theta_0, J over t <= T', PPO reference theta_0), both with early
stopping on an out-of-distribution validation zone-year, against the persistence forecast
(next hour = this hour). One seed at a tiny size: the numbers show the pipeline, not a result
(``benchmarks/seeds/gas_dro.py`` has the seeded tables).

Runs anywhere: with $TAILJAX_DATA unset it uses the carbon subset bundled in the package
(ERCOT and CAISO 2021-2023; train ERCOT 2021-22, validate on CAISO 2021, test on the rest);
with $TAILJAX_DATA set, the full data (validate on GB, test on the other zone-years)."""

from __future__ import annotations

import os
import pathlib
import time

import jax
import numpy as np

from benchmarks import _harness as harness
from benchmarks.setups.dro import MethodSettings, carbon_setup, scorer, train_method
from tailjax import dro

SETUP = dict(stride=8, test_stride=48, num_steps=40, noise_features=(128, 128), generator_steps=1500,
             baselines=False, budget_delta=0.005, j_batch=512)
STEPS = dict(ML=1500, GAS=200)
GAS = dro.GasDroConfig(inner_steps=1, epochs=3, num_samples=32, outer_samples=64)


def run(out_dir: pathlib.Path) -> str:
    start = time.perf_counter()
    key = jax.random.key(0)
    full = bool(os.environ.get("TAILJAX_DATA"))
    ood = ("GB",) if full else ("CAISO-2021",)
    setup = carbon_setup(key, None, "today", ood_validation=ood, **SETUP)
    val, tests = scorer(setup.loss_fn, setup.ood_validation), scorer(setup.loss_fn, setup.tests)
    res = {}
    for name, steps in (("ML", STEPS["ML"]), ("GAS-DRO", STEPS["GAS"])):
        settings = MethodSettings(steps=steps, eval_every=max(1, steps // 15), patience=5,
                                  gas=GAS._replace(budget=setup.budget))
        w, cost, _ = train_method(name, jax.random.fold_in(key, 1), setup.loss_fn, setup.params, setup.train,
                                  setup.resources, settings, validation=val)
        mse = tests(w)
        res[name] = {"run": name, "mse": mse, "validation": min(v for _, v in cost["evaluations"]),
                     "average": float(np.mean(list(mse.values()))), "worst": float(max(mse.values())),
                     "steps": cost["steps"], "seconds": cost["seconds"]}
    ref = setup.info["reference"]["persistence"]
    res["persistence"] = {"run": "persistence", "mse": ref, "average": float(np.mean(list(ref.values()))),
                          "worst": float(max(ref.values()))}
    payload = {"task": "carbon intensity, train ERCOT 2021-22", "data": "full" if full else "bundled subset",
               "ood_validation": list(ood), "setup": SETUP, "steps": STEPS, "gas": GAS._asdict(),
               "J0": setup.info["J0"], "J_sd": setup.info["J_sd"], "budget": setup.budget,
               "last_steps": setup.info["last_steps"], "results": res,
               "total_seconds": time.perf_counter() - start}
    harness.write_json(out_dir, "f_gas_dro", payload)

    sets = list(res["ML"]["mse"])
    xs = np.arange(len(sets))
    fig, ax = harness.figure(figsize=(8, 3.5))
    for j, name in enumerate(res):
        ax.bar(xs + 0.27 * (j - 1), [res[name]["mse"][s] for s in sets], 0.27, label=name)
    ax.set_xticks(xs, sets, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("test MSE"), ax.set_yscale("log"), ax.legend()
    ax.set_title("carbon intensity under zone shift (tiny demo, one seed)")
    harness.save_figure(fig, out_dir, "f_gas_dro")
    table = harness.markdown_table(res.values(), ["run", "validation", "average", "worst", "steps", "seconds"],
                                   {"validation": ".5f", "average": ".5f", "worst": ".5f", "seconds": ".1f"})
    return (f"{table}\ndata: {payload['data']}; selection and early stopping on {', '.join(ood)}; "
            f"J0 {setup.info['J0']:.4f} (sd of one estimate {setup.info['J_sd']:.4f}), delta {SETUP['budget_delta']}, "
            f"T' {setup.info['last_steps']}")

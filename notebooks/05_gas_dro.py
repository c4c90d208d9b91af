# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # GAS-DRO: distributionally robust learning over a generative ambiguity set
#
# GAS-DRO (Wen & Yang) solves
# $\min_w \max_\theta \mathbb{E}_{x\sim P_\theta} f(w, x)$ s.t. $J(\theta, P_0) \le \epsilon$:
# the adversary is a generative model whose reconstruction loss on the nominal data stays
# within a budget. Here $P_\theta$ is the VAE ambiguity set of the paper's Appendix B (the
# decoder is perturbed, the encoder frozen) and the task is the paper's digits-under-shift
# experiment: a two-layer classifier (hidden width 8, squared loss) trained on USPS and
# tested on USPS, on scikit-learn's 8x8 digits resized to 16x16, and on Gaussian, Perlin
# and cutout corruptions of both. We compare ML (ERM), W-DRO (Wasserstein penalty) and
# GAS-DRO with the same predictor, initialisation and number of predictor updates.

# %%
import os
import pathlib

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from tailjax.dro.gas_dro import GasDroConfig
from tailjax.dro.methods import MethodSettings, train_method
from tailjax.dro.pipeline import accuracy
from tailjax.dro.setups import digits_setup

SMALL = os.environ.get("TAILJAX_NOTEBOOK_SMALL") == "1"
DATA = pathlib.Path(os.environ.get("TAILJAX_DATA", pathlib.Path.cwd().parent.parent / "shared" / "data"))
if not (DATA / "usps").is_dir():  # run from the repository root instead of notebooks/
    DATA = pathlib.Path.cwd().parent / "shared" / "data"
HAVE_DATA = (DATA / "usps").is_dir()
print("data:", DATA, "| found:", HAVE_DATA, "| small:", SMALL)
if not HAVE_DATA:
    print("USPS data not found: set TAILJAX_DATA to the folder holding usps/; cells below skip.")

# %% [markdown]
# ## Nominal model and ambiguity set
# `digits_setup` loads the data, builds the corrupted test sets, trains a conditional VAE on
# USPS by maximising the ELBO, and sets the budget to $\epsilon = J(\theta_0, P_0) + \delta$.

# %%
key = jax.random.key(0)
if HAVE_DATA:
    setup = digits_setup(
        key, DATA, vae_steps=800 if SMALL else 5000, max_train=3000 if SMALL else None,
        max_test=500 if SMALL else None, baselines=False,
    )
    print({k: round(v, 4) if isinstance(v, float) else v for k, v in setup.info.items()})
    print("test sets:", list(setup.tests))

# %% [markdown]
# ## Train ML, W-DRO and GAS-DRO
# GAS-DRO: each outer iteration runs $K$ PPO steps on the decoder (clipped likelihood ratio,
# $\kappa = 0.4$) with dual ascent on $\mu$, draws a batch from a decoder picked uniformly
# among the inner iterates, and takes one predictor step on it.

# %%
steps = 300 if SMALL else 2000
results = {}
if HAVE_DATA:
    gas = GasDroConfig(inner_steps=2, epochs=3, dual_lr=1.0, budget=setup.budget)
    settings = MethodSettings(steps=steps, gas=gas, gas_learning_rate=1e-4)
    for i, name in enumerate(("ML", "W-DRO", "GAS-DRO")):
        w, cost, hist = train_method(name, jax.random.fold_in(key, i), setup.loss_fn, setup.params,
                                     setup.train, setup.resources, settings)
        acc = {k: accuracy(setup.model, w, x, np.argmax(y, -1)) for k, (x, y) in setup.tests.items()}
        results[name] = acc
        print(f"{name:8s} average {np.mean(list(acc.values())):.3f}  worst {min(acc.values()):.3f}  "
              f"({cost['seconds']:.1f} s)")
        if name == "GAS-DRO":
            print(f"  final mu {hist['mu'][-1]:.3f}, J {hist['reconstruction'][-10:].mean():.4f}, "
                  f"budget {setup.budget:.4f}")

# %% [markdown]
# ## Accuracy under shift

# %%
if results:
    sets = list(results["ML"])
    xs = np.arange(len(sets))
    fig, ax = plt.subplots(figsize=(9, 3.5))
    for j, (name, acc) in enumerate(results.items()):
        ax.bar(xs + 0.27 * (j - 1), [acc[s] for s in sets], 0.27, label=name)
    ax.set_xticks(xs, sets, rotation=30, ha="right")
    ax.set_ylabel("test accuracy")
    ax.legend()
    fig.tight_layout()
    plt.show()

# %% [markdown]
# One seed at small size: the numbers vary from run to run; `benchmarks/seeds/gas_dro.py`
# runs every method (ML, DML, KL-DRO, W-DRO, DRAGEN, P-DRO, GAS-DRO) on both tasks.

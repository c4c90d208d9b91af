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
#
# Every trainer below has one shape: a loss `loss(params, batch, key) -> (value, aux)`,
# turned into a kernel by `gradient_kernel` (or GAS-DRO's own kernel, which wraps two of
# them), driven by `fit`.

# %%
import functools
import os

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import optax

from tailjax import dro
from tailjax.nn import VAE, MLPClassifier, vae as vae_lib
from tailjax.training import fit, gradient_kernel, minibatches

SMALL = os.environ.get("TAILJAX_NOTEBOOK_SMALL") == "1"
# The full USPS set is read from $TAILJAX_DATA/usps; without it, the loaders fall back to the
# 600-digit USPS subset that ships inside the package (400 training, 200 test digits).
DATA = os.environ.get("TAILJAX_DATA") or None
HAVE_DATA = True
print("data:", DATA or "USPS subset bundled with tailjax", "| small:", SMALL)

# %% [markdown]
# ## Data under shift
# USPS for training; test sets with a domain shift (scikit-learn's digits) and corruptions.

# %%
key = jax.random.key(0)
if HAVE_DATA:
    usps = dro.load_usps(DATA)
    n_train, n_test = (3000, 500) if SMALL else (None, None)
    train = (jnp.asarray(usps["x_train"][:n_train]), jax.nn.one_hot(usps["y_train"][:n_train], 10))
    sk_x, sk_y = dro.load_sklearn_digits(16)
    clean = {"USPS": (usps["x_test"][:n_test], usps["y_test"][:n_test]), "sklearn": (sk_x[:n_test], sk_y[:n_test])}
    tests = dict(clean)
    for i, (kind, level) in enumerate({"gaussian": 0.3, "perlin": 0.5, "cutout": 8}.items()):
        for j, (name, (x, y)) in enumerate(clean.items()):
            k = jax.random.fold_in(key, 10 * i + j)
            tests[f"{name}+{kind}"] = (dro.corrupt(k, jnp.asarray(x), kind, level), y)
    print("training images:", train[0].shape, "| test sets:", list(tests))

# %% [markdown]
# ## Nominal model and ambiguity set
# A conditional VAE fitted to USPS by maximising the ELBO (`vae_loss`, a loss in the library's
# shape), the VAE ambiguity set around its decoder, and the budget
# $\epsilon = J(\theta_0, P_0) + \delta$.

# %%
if HAVE_DATA:
    vae = VAE((16, 16), latent_dim=4, hidden=(256, 256), obs_std=0.15)
    k_init, k_data, k_fit, k_j = jax.random.split(jax.random.fold_in(key, 1), 4)
    vae_kernel = gradient_kernel(functools.partial(vae_lib.vae_loss, vae=vae), optax.adam(1e-3))
    vae_params = vae.init(k_init, train[0][0], jnp.zeros(4), train[1][0])
    res = fit(vae_kernel, vae_kernel.init(vae_params), k_fit, 800 if SMALL else 5000,
              batches=minibatches(k_data, train, 256), progress=False)
    vae_params = res.state.params
    print(f"VAE negative ELBO per pixel: {res.history['loss'][:50].mean():.3f} -> {res.history['loss'][-50:].mean():.3f}")

    freqs = jnp.mean(train[1], 0)
    draw_label = lambda k: jax.nn.one_hot(jax.random.categorical(k, jnp.log(freqs)), 10)
    ambiguity_set = dro.vae_ambiguity_set(vae, vae_params, cond_sampler=draw_label)
    _, theta0 = vae_lib.split_params(vae_params)  # the nominal decoder
    head = jax.tree_util.tree_map(lambda a: a[:2048], train)
    j0 = float(jnp.mean(jax.jit(jax.vmap(lambda k: ambiguity_set.reconstruction_loss(theta0, head, k)))(
        jax.random.split(k_j, 8))))
    budget = j0 + 0.002
    print(f"J(theta_0, P_0) = {j0:.4f}, budget epsilon = {budget:.4f}")

# %% [markdown]
# ## Train ML, W-DRO and GAS-DRO
# The predictor's per-sample loss $f(w, x)$ is all the DRO losses need. ML and W-DRO are
# `gradient_kernel`s on `erm_loss` and `wasserstein_loss`. GAS-DRO: each outer iteration runs
# $K$ PPO steps on the decoder (clipped likelihood ratio, $\kappa = 0.4$) with dual ascent on
# $\mu$, draws a batch from a decoder picked uniformly among the inner iterates, and takes one
# predictor step on it; `fit_gas_dro` feeds it $K$ nominal batches per step.

# %%
steps = 300 if SMALL else 2000
predictors, histories = {}, {}
if HAVE_DATA:
    model = MLPClassifier(hidden=8)
    w0 = model.init(jax.random.fold_in(key, 2), train[0][0])

    def f(w, sample):  # squared error between the scores and the one-hot label
        image, onehot = sample
        return jnp.mean((model.apply(w, image) - onehot) ** 2)

    ml = gradient_kernel(functools.partial(dro.erm_loss, loss_fn=f), optax.adam(1e-3))
    wdro = gradient_kernel(
        functools.partial(dro.wasserstein_loss, loss_fn=f, penalty=10.0, steps=10, step_size=0.02,
                          where=lambda s: s[0], replace=lambda s, x: (x, s[1])),
        optax.adam(1e-3),
    )
    batches = minibatches(jax.random.fold_in(key, 3), train, 64)
    for name, kernel in (("ML", ml), ("W-DRO", wdro)):
        res = fit(kernel, kernel.init(w0), jax.random.fold_in(key, 4), steps, batches=batches, progress=False)
        predictors[name], histories[name] = res.state.params, res.history

    config = dro.GasDroConfig(inner_steps=2, epochs=3, dual_lr=1.0, budget=budget)
    gas = dro.gas_dro_kernel(ambiguity_set, f, optax.adam(1e-3), optax.adam(1e-4), config)
    res = dro.fit_gas_dro(jax.random.fold_in(key, 5), gas, gas.init(w0, theta0), train, num_steps=steps,
                          config=config, batch_size=256, progress=False)
    predictors["GAS-DRO"], histories["GAS-DRO"] = dro.select_predictor(res.state), res.history
    h = res.history
    print(f"GAS-DRO: final mu {h['mu'][-1]:.3f}, J {h['reconstruction'][-10:].mean():.4f} (budget {budget:.4f}), "
          f"adversarial loss {h['adversarial_loss'][-10:].mean():.4f} vs outer loss {h['loss'][-10:].mean():.4f}")

# %% [markdown]
# ## Accuracy under shift

# %%
results = {}
if predictors:
    scores = jax.jit(model.apply)
    for name, w in predictors.items():
        results[name] = {s: float(jnp.mean(jnp.argmax(scores(w, jnp.asarray(x)), -1) == jnp.asarray(y)))
                         for s, (x, y) in tests.items()}
        acc = results[name]
        print(f"{name:8s} average {np.mean(list(acc.values())):.3f}  worst {min(acc.values()):.3f}")
    sets = list(tests)
    xs = np.arange(len(sets))
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.5), gridspec_kw={"width_ratios": [3, 1]})
    for j, (name, acc) in enumerate(results.items()):
        axes[0].bar(xs + 0.27 * (j - 1), [acc[s] for s in sets], 0.27, label=name)
        axes[1].plot(histories[name]["loss"], label=name, lw=0.8)
    axes[0].set_xticks(xs, sets, rotation=30, ha="right")
    axes[0].set_ylabel("test accuracy")
    axes[0].legend()
    axes[1].set_xlabel("predictor update")
    axes[1].set_ylabel("training loss")
    axes[1].set_yscale("log")
    fig.tight_layout()
    plt.show()

# %% [markdown]
# One seed at small size: the numbers vary from run to run. `benchmarks/seeds/gas_dro.py`
# runs every method (ML, DML, KL-DRO, W-DRO, DRAGEN, P-DRO, GAS-DRO) on both tasks with the
# paper's settings.

# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Tail risk with `tailjax.risk`
#
# VaR and CVaR of a heavy-tailed loss, the Rockafellar–Uryasev (RU) objective whose minimiser
# is the VaR, and the inverse CDF with the tail shaded.
#
# Convention: `tail_prob` is the probability mass of the tail (0.01 = the worst 1%),
# `side="upper"` for losses.

# %%
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from tailjax import risk

SMALL = os.environ.get("TAILJAX_NOTEBOOK_SMALL") == "1"
N = 200_000 if SMALL else 5_000_000

# %% [markdown]
# ## A Pareto loss: closed forms to compare with
#
# For a Pareto loss with shape $a > 1$ and scale $x_m$, the upper tail of mass $p$ has
# $\mathrm{VaR}_p = x_m p^{-1/a}$ and $\mathrm{CVaR}_p = \frac{a}{a-1}\mathrm{VaR}_p$.

# %%
a, x_m = 2.5, 1.0
losses = x_m * jax.random.pareto(jax.random.PRNGKey(0), a, (N,))  # Pareto on [x_m, inf)

print(f"{'tail_prob':>9s} {'VaR':>8s} {'exact':>8s} {'CVaR':>8s} {'exact':>8s}")
for p in [0.1, 0.01, 0.001]:
    v, c = risk.var_cvar(losses, p)
    exact_v = x_m * p ** (-1 / a)
    print(f"{p:9.3f} {float(v):8.3f} {exact_v:8.3f} {float(c):8.3f} {a / (a - 1) * exact_v:8.3f}")

# %% [markdown]
# The estimate converges at the usual Monte Carlo rate, slower the deeper the tail (this is
# what importance sampling in `tailjax.importance` fixes).

# %%
p = 0.01
exact_c = a / (a - 1) * x_m * p ** (-1 / a)
sizes = [1_000, 10_000, 100_000]
keys = jax.random.split(jax.random.PRNGKey(1), 50)
for n in sizes:
    draws = jax.vmap(lambda k: x_m * jax.random.pareto(k, a, (n,)))(keys)
    est = risk.cvar(draws, p)  # the last axis is the sample axis; one CVaR per key
    print(f"n={n:>7d}  relative RMSE of CVaR_0.01: {float(jnp.sqrt(jnp.mean((est / exact_c - 1) ** 2))):.3f}")

# %% [markdown]
# ## The RU objective: its minimum is the CVaR, attained at the VaR
#
# $F(u) = u + \frac{1}{n p}\sum_i (\ell_i - u)_+$ is convex and piecewise linear in $u$.

# %%
u_grid = jnp.linspace(1.0, 12.0, 400)
objective = jax.vmap(lambda u: risk.ru_objective(u, losses, p))(u_grid)
v, c = risk.var_cvar(losses, p)
u_best = u_grid[jnp.argmin(objective)]
print(f"argmin over the grid {float(u_best):.3f}, VaR {float(v):.3f}; min {float(objective.min()):.4f}, CVaR {float(c):.4f}")

fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
ax[0].plot(u_grid, objective)
ax[0].axvline(float(v), color="C3", ls="--", label=f"VaR = {float(v):.2f}")
ax[0].axhline(float(c), color="C2", ls=":", label=f"CVaR = {float(c):.2f}")
ax[0].set(xlabel="u", ylabel="RU objective", title=f"tail_prob = {p}")
ax[0].legend()

# %% [markdown]
# ## Inverse CDF with the tail shaded
#
# CVaR is the average of the inverse CDF over the shaded tail.

# %%
levels = jnp.linspace(0.5, 0.9995, 500)
quantiles = jnp.quantile(losses, levels)
ax[1].plot(levels, quantiles, color="k")
tail = levels >= 1 - p
ax[1].fill_between(np.asarray(levels), 0, np.asarray(quantiles), where=np.asarray(tail), color="C3", alpha=0.3,
                   label=f"worst {p:.0%}")
ax[1].axhline(float(c), color="C2", ls=":", label="CVaR")
ax[1].set(xlabel="level", ylabel="loss quantile", yscale="log", title="inverse CDF")
ax[1].legend()
fig.tight_layout()

# %% [markdown]
# ## Rewards, weights and large arrays
#
# * `side="lower"` gives the mean of the smallest values (rewards);
# * `weights=` importance weights (normalised internally), exact on the weighted sample;
# * `risk.cvar_large` selects the VaR without sorting, for 10^8 samples on a GPU;
# * `tailjax.parallel.sharded_cvar` gives the exact CVaR of samples spread over devices.

# %%
rewards = -losses
print("lower-tail CVaR of rewards:", float(risk.cvar(rewards, p, side="lower")), "= -", float(c))
w = jnp.exp(-0.1 * losses)  # e.g. likelihood ratios of an exponentially tilted proposal
print("weighted CVaR:", float(risk.cvar(losses, p, weights=w)))
print("cvar_large == cvar:", float(risk.cvar_large(losses, p)), float(c))

# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Importance sampling for tail-risk minimisation
#
# Deo & Murthy's tutorial in code: a heavy-tailed portfolio (multivariate Student-t
# returns, nu = 3) at tail mass `tail_prob` = 1e-3 (the tutorial's beta). Plain
# sample-average approximation (SAA) sees about one tail sample per thousand draws; the self-structuring transformation T_h
# stretches typical draws into the tail and reweights them by an exact likelihood ratio.
#
# 0. the tutorial's Figure 1: bivariate Gaussian and Weibull(0.6) samples before and after
#    T_h, with the rare-event regions at levels 1e-2, 1e-3, 1e-4,
# 1. the samples of the portfolio problem before and after T_h (h by the oracle),
# 2. relative error of the CVaR estimate against n, SAA vs self-structuring IS,
# 3. retrospective approximation (Algorithm 1) with IS: the iterate path,
# 4. stochastic approximation (Algorithm 3) with adaptive IS: a `Kernel` run by `training.fit`.
#
# Set `TAILJAX_NOTEBOOK_SMALL=1` for a quick run.

# %%
import os

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from tailjax.importance import (
    gaussian,
    is_var_cvar,
    iid_weibull,
    sample_losses,
    self_structuring_oracle,
    self_structuring_sample,
    self_structuring_scheme,
    self_structuring_transform,
)
from tailjax.stochopt import retrospective_approximation, stochastic_approximation
from tailjax.stochopt.problems import portfolio_optimum, portfolio_problem, portfolio_var_cvar
from tailjax.training import fit

jax.config.update("jax_enable_x64", True)
SMALL = os.environ.get("TAILJAX_NOTEBOOK_SMALL") == "1"
TAIL_PROB = 1e-3  # the tutorial's beta: the worst 0.1% of the losses
REPS = 40 if SMALL else 200
N_GRID = [2**k for k in range(8, 12 if SMALL else 17)]

p = portfolio_problem(5, "t", nu=3.0, dtype=jnp.float64)
theta_star, c_star, var_star = portfolio_optimum(p, TAIL_PROB)
print(f"optimal CVaR c_beta = {float(c_star):.3f} (VaR {float(var_star):.3f}), theta* = {np.round(np.asarray(theta_star), 3)}")

# %% [markdown]
# ## 0. Figure 1: T_h on a light and a heavy tail
#
# The tutorial's Figure 1 in two dimensions: 2000 draws of a standard bivariate Gaussian and
# of iid Weibull(0.6) coordinates (subexponential), before and after T_h, with the
# rare-event regions {x_1 + x_2 > u_beta} at beta = 1e-2, 1e-3, 1e-4 (u_beta exact for the
# Gaussian, a Monte Carlo quantile of 2^22 draws for the Weibull). T_h is built for
# beta = 1e-4 with h = 1 (s_h = log log 1e4 = 2.2): the cloud keeps its shape (a round
# blob, an L-shaped heavy-tailed one) while its outer layer moves into the rare regions,
# where nominal draws almost never land.

# %%
from scipy import stats  # noqa: E402

FIG_BETA, FIG_H = 1e-4, 1.0
levels = (1e-2, 1e-3, 1e-4)
laws = {"Gaussian": gaussian(jnp.zeros(2)), "Weibull(0.6)": iid_weibull(0.6, 2, dtype=jnp.float64)}
fig, axes = plt.subplots(2, 2, figsize=(9, 8))
for row, (name, law) in enumerate(laws.items()):
    if name == "Gaussian":
        u_levels = [np.sqrt(2.0) * stats.norm.isf(b) for b in levels]
    else:
        big = np.asarray(jnp.sum(law.sample(jax.random.PRNGKey(7), 2**22), axis=1))
        u_levels = [float(np.quantile(big, 1 - b)) for b in levels]
    pts = law.sample(jax.random.PRNGKey(8), 2000)
    stretched = self_structuring_transform(pts, FIG_H, FIG_BETA)
    lim = 1.15 * max(u_levels[-1], float(jnp.max(jnp.abs(stretched))))
    for col, (cloud, title) in enumerate(((pts, "X ~ f_X"), (stretched, f"T_h(X), h={FIG_H}, beta={FIG_BETA:g}"))):
        ax = axes[row, col]
        cloud = np.asarray(cloud)
        ax.scatter(cloud[:, 0], cloud[:, 1], s=2, c="0.4")
        grid = np.linspace(-lim, lim, 2)
        for b, u, color in zip(levels, u_levels, ("C0", "C1", "C3")):
            ax.plot(grid, u - grid, color=color, lw=1, label=f"x1 + x2 = u at {b:g} "
                    f"({np.mean(cloud.sum(1) > u):.1%} of the draws beyond)")
        ax.set_xlim(-lim if name == "Gaussian" else 0, lim)
        ax.set_ylim(-lim if name == "Gaussian" else 0, lim)
        ax.set_title(f"{name}: {title}", fontsize=9)
        ax.legend(fontsize=6, loc="upper right")
fig.tight_layout()

# %% [markdown]
# ## 1. Samples before and after T_h
#
# The oracle (Algorithm 2) picks h by minimising the estimated second moment of the IS
# estimator at the decision (u, theta) = (VaR, theta*). Nominal draws X (grey) are mapped to
# Z = T_h(X): the largest coordinate of each draw is scaled by s_h, the others by less, so
# the cloud keeps its shape while reaching the region where the loss exceeds the VaR (red).

# %%
oracle = jax.jit(lambda k, u, th: self_structuring_oracle(k, u, th, p.dist, p.loss, TAIL_PROB, pilot_size=1024))
theta_star, var_star = jnp.asarray(theta_star), jnp.asarray(var_star)
h, info = oracle(jax.random.PRNGKey(0), var_star, theta_star)
print(f"oracle: h = {float(h):.3f}")

x = p.dist.sample(jax.random.PRNGKey(1), 3000)
z = jax.vmap(lambda xi: self_structuring_transform(xi, h, TAIL_PROB))(x)
loss_x = sample_losses(p.loss, x, theta_star)
loss_z = sample_losses(p.loss, z, theta_star)
fig, axes = plt.subplots(1, 3, figsize=(13, 4))
for ax, pts, losses, title in [(axes[0], x, loss_x, "nominal X ~ f_X"), (axes[1], z, loss_z, "Z = T_h(X)")]:
    tail = np.asarray(losses > var_star)
    pts = np.asarray(pts)
    ax.scatter(pts[~tail, 3], pts[~tail, 4], s=3, c="0.6")
    ax.scatter(pts[tail, 3], pts[tail, 4], s=5, c="C3", label=f"loss > VaR ({tail.mean():.1%})")
    ax.set_title(title)
    ax.set_xlabel("x_4")
    ax.set_ylabel("x_5")
    ax.legend(loc="lower left", fontsize=8)
axes[2].semilogx(np.asarray(info.h_grid), np.asarray(info.log_m2_grid), "o-", ms=3)
axes[2].axvline(float(h), color="C3", ls="--")
axes[2].set_title("oracle: estimated log M2(h)")
axes[2].set_xlabel("h")
fig.tight_layout()

# %% [markdown]
# ## 2. Relative error against n
#
# The CVaR at theta* is estimated by the minimum over u of the SAA / IS objective (one
# weighted sort) from REPS independent replications per n; the exact value is a closed
# form. We plot the 95% quantile of the relative error.

# %%
exact = float(portfolio_var_cvar(p, theta_star, TAIL_PROB)[1])
unit_h = 1.0 / max(np.log(np.log(1 / TAIL_PROB)), 1.0)  # s_h = 1: T_h is the identity, i.e. SAA


def make_estimator(n):
    """REPS estimates of CVaR(theta*) from n samples of T_h(X) (h traced: one program per n)."""

    def estimate(key, h_value):
        zz, log_lr = self_structuring_sample(key, p.dist, n, h_value, TAIL_PROB)
        return is_var_cvar(sample_losses(p.loss, zz, theta_star), log_lr, TAIL_PROB)[1]

    return jax.jit(jax.vmap(estimate, in_axes=(0, None)))


q_saa, q_ss = [], []
for n in N_GRID:
    estimator = make_estimator(n)
    keys = jax.random.split(jax.random.PRNGKey(n), REPS)
    for h_value, out in ((jnp.asarray(unit_h), q_saa), (h, q_ss)):
        est = np.asarray(estimator(keys, h_value))
        out.append(np.quantile(np.abs(est / exact - 1), 0.95))
plt.figure(figsize=(5, 3.5))
plt.loglog(N_GRID, q_saa, "o-", label="SAA")
plt.loglog(N_GRID, q_ss, "o-", label="self-structuring IS")
plt.axhline(0.01, color="k", ls="--", lw=0.8)
plt.xlabel("n")
plt.ylabel("95% quantile of |rel. error|")
plt.legend()
for n, a, b in zip(N_GRID, q_saa, q_ss):
    print(f"n={n:6d}  SAA {a:.4f}   IS {b:.4f}")

# %% [markdown]
# ## 3. Retrospective approximation with IS
#
# Algorithm 1: stage k draws n_k = 2 n_{k-1} samples from a law chosen afresh by the
# oracle at the previous iterate, solves the IS sample problem to the certified gap
# eps_k = K / sqrt(n_k) with the JAX level method (warm-started), and moves on.

# %%
scheme = self_structuring_scheme(p.dist, p.loss, TAIL_PROB, pilot_size=1024)
res = retrospective_approximation(
    jax.random.PRNGKey(2), p.loss, scheme, p.theta_set, TAIL_PROB,
    n0=256 if SMALL else 2048, growth=2.0, num_stages=3 if SMALL else 5,
    tolerance_scale=0.5, u0=0.0, padding="max",
)
for s in res.stages:
    true = float(portfolio_var_cvar(p, s.theta, TAIL_PROB)[1])
    print(f"n={s.n:6d} h={float(s.is_param):.2f} eps={s.tolerance:.4f} gap={float(s.gap):.2e} "
          f"IS value={float(s.value):.3f} true CVaR(theta_k)={true:.3f}")
thetas = np.stack([np.asarray(s.theta) for s in res.stages])
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
for j in range(p.dim):
    axes[0].plot([s.n for s in res.stages], thetas[:, j], "o-", label=f"asset {j + 1}")
    axes[0].axhline(float(theta_star[j]), color=f"C{j}", ls=":", lw=0.8)
axes[0].set_xscale("log")
axes[0].set_xlabel("stage sample size n_k")
axes[0].set_title("RA iterates theta_k (dotted: theta*)")
axes[0].legend(fontsize=7)
axes[1].semilogx([s.n for s in res.stages], [float(s.value) for s in res.stages], "o-", label="stage IS optimum")
axes[1].semilogx([s.n for s in res.stages], [float(portfolio_var_cvar(p, s.theta, TAIL_PROB)[1]) for s in res.stages], "s-", label="true CVaR of theta_k")
axes[1].axhline(float(c_star), color="k", ls="--", lw=0.8, label="c_beta")
axes[1].set_xlabel("n_k")
axes[1].legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## 4. Stochastic approximation with adaptive IS
#
# Algorithm 3 is a `Kernel(init, step)` like every trainer in tailjax: each step draws a
# batch from the current IS law, takes a projected SGD step on (u, theta) with step size
# gamma_n = c n^(-gamma) (an optax schedule inside `training.gradient_kernel`), updates the
# Polyak averages, and re-runs the oracle every `update_every` steps. `training.fit` drives
# it (progress bar, history, checkpoints if asked).

# %%
sa_scheme = self_structuring_scheme(p.dist, p.loss, TAIL_PROB, h_grid=np.geomspace(0.5, 8.0, 8), pilot_size=512)
kernel = stochastic_approximation(
    p.loss, sa_scheme, p.theta_set, TAIL_PROB, batch_size=64, step_scale=0.05,
    update_every=100, average_start=100,
)
state = kernel.init(p.theta_set.feasible_point(jnp.float64), jax.random.PRNGKey(3), u0=float(var_star))
sa = fit(kernel, state, jax.random.PRNGKey(4), 400 if SMALL else 3000, progress=False)
sa_value = float(portfolio_var_cvar(p, sa.state.theta_avg, TAIL_PROB)[1])
print(f"SA: true CVaR of the averaged decision {sa_value:.3f} vs c_beta {float(c_star):.3f} "
      f"({sa_value / float(c_star) - 1:+.2%})")
plt.figure(figsize=(5, 3.2))
plt.plot(sa.history["objective"], lw=0.5)
plt.axhline(float(c_star), color="k", ls="--", lw=0.8, label="c_beta")
plt.xlabel("step n")
plt.ylabel("batch objective F_b")
plt.legend()

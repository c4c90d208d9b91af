"""TFFT's experiment set-ups: Table 4 (prior N(0, I_2), r = x1 + x2, alpha = 1) with its exact
targets by quadrature, the paper's numbers, flow pre-training, and the 8x8-digits task.

Names are the library's: ``quantile_level`` is TFFT's beta, ``temperature`` its alpha,
R-CVaR_beta the mean of the top 1 - beta of rewards (``side="upper"``), L-CVaR_beta the mean
of the bottom beta (``side="lower"``).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.special import logsumexp
from jax.scipy.stats import norm

from tailjax.flows import fit_flow_matching
from tailjax.nn import VelocityField
from tailjax.risk import cvar, pseudo_reward, solve_threshold
from tailjax.training import fit, gradient_kernel, minibatches

__all__ = [
    "TEMPERATURE", "PAPER", "T_STAR_UPPER", "reward", "metrics", "table4_exact", "table4_reweighting",
    "pretrain", "digits_data", "train_classifier",
]

TEMPERATURE = 1.0  # TFFT's alpha in Table 4
T_STAR_UPPER = 5.2772  # the R-TFFT threshold at beta = 0.8 (quadrature)
# TFFT's Table 4: E[r] / R-CVaR_0.8 / L-CVaR_0.2 of each fine-tuned model.
PAPER = {"Pre-trained": (0.00, 1.99, -1.98), "EXP-FT": (2.03, 4.06, 0.03),
         "L-TFFT": (2.00, 3.08, 1.23), "R-TFFT": (1.26, 6.31, -1.80)}


def reward(x):
    """Table 4's reward r(x) = x1 + x2 (per sample)."""
    return x[0] + x[1]


def metrics(r, w=None, upper=0.8, lower=0.2):
    """[E[r], R-CVaR_upper, L-CVaR_lower] of (weighted) rewards, TFFT's quantile levels."""
    r = jnp.asarray(r)
    mean = jnp.mean(r) if w is None else jnp.sum(w * r) / jnp.sum(w)
    return [float(mean), float(cvar(r, 1 - upper, weights=w)), float(cvar(r, lower, weights=w, side="lower"))]


def table4_exact(grid_points=750_001):
    """Exact Table 4: r ~ N(0, 2) under the prior and each target's law of r is a 1-D tilt of
    it, so quadrature on a grid of r gives its metrics, t* and quantile function."""
    with jax.enable_x64(True):
        r = jnp.linspace(-30.0, 45.0, grid_points)
        logphi = norm.logpdf(r, scale=jnp.sqrt(2.0))
        w0 = jnp.exp(logphi)
        t_l = float(solve_threshold(r, 0.2, TEMPERATURE, "lower", w0))
        t_r = float(solve_threshold(r, 0.8, TEMPERATURE, "upper", w0))
        rows = {"Pre-trained": (w0, None)}
        rows["EXP-FT"] = (jnp.exp(logphi + r / TEMPERATURE - logsumexp(logphi + r / TEMPERATURE)), None)
        for name, t, beta, side in (("L-TFFT", t_l, 0.2, "lower"), ("R-TFFT", t_r, 0.8, "upper")):
            lw = logphi + pseudo_reward(r, t, beta, side) / TEMPERATURE
            rows[name] = (jnp.exp(lw - logsumexp(lw)), t)
        out = {k: {"metrics": metrics(r, w), "t_star": t} for k, (w, t) in rows.items()}
        u = np.linspace(0.001, 0.999, 999)
        for k, (w, _) in rows.items():
            cdf = np.cumsum(np.asarray(w)) / float(jnp.sum(w))
            out[k]["quantiles"] = np.interp(u, cdf, np.asarray(r)).tolist()
        out["u"] = u.tolist()
    return out


def table4_reweighting(reps):
    """The paper's R-TFFT row: t* and the target estimated by reweighting 10^4 prior samples,
    ``reps`` times."""
    rows = []
    with jax.enable_x64(True):
        for s in range(reps):
            r = jnp.sqrt(2.0) * jax.random.normal(jax.random.key(1000 + s), (10_000,))
            t = solve_threshold(r, 0.8, TEMPERATURE, "upper")
            w = jax.nn.softmax(pseudo_reward(r, t, 0.8, "upper") / TEMPERATURE)
            rows.append([float(t)] + metrics(r, w) + [float(jnp.max(w))])
    a = np.array(rows)
    return {"mean": a.mean(0).tolist(), "std": a.std(0).tolist(),
            "columns": ["t*", "E", "R-CVaR", "L-CVaR", "max weight"]}


def pretrain(key, data, hidden, *, num_steps, batch_size, lr, time_embedding_dim=32, linear_skip=False):
    """Flow matching on ``data: (n, d)`` with an MLP velocity field and a cosine learning rate.

    Returns ``(field, params, fit_result)`` with ``field(params, x, t)`` per sample.
    """
    module = VelocityField(hidden=tuple(hidden), time_embedding_dim=time_embedding_dim, linear_skip=linear_skip)
    field = lambda p, x, t: module.apply(p, x, t)
    k_init, k_fit = jax.random.split(key)
    sched = optax.cosine_decay_schedule(lr, num_steps, alpha=0.05)
    res = fit_flow_matching(k_fit, field, module.init(k_init, jnp.zeros(data.shape[1]), 0.0), data,
                            num_steps=num_steps, batch_size=batch_size, optimizer=optax.adam(sched), progress=False)
    return field, res.state.params, res


def digits_data(key, reps=10):
    """scikit-learn's 8x8 digits, dequantised (pixel + U[0, 1)) ``reps`` times and scaled to
    [-1, 1]: ``(data (reps * 1797, 64), labels)``."""
    from sklearn.datasets import load_digits

    x_raw, y = load_digits(return_X_y=True)
    u = jax.random.uniform(key, (reps,) + x_raw.shape)
    data = ((jnp.asarray(x_raw, jnp.float32)[None] + u) / 17.0 * 2.0 - 1.0).reshape(-1, 64)
    return data, jnp.tile(jnp.asarray(y), reps)


class _Classifier(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(10)(nn.silu(nn.Dense(128)(x)))


def train_classifier(key, x, y, steps=1500, batch_size=256):
    """A one-hidden-layer MLP classifier (Adam 3e-3, cross-entropy); returns ``(params, apply)``."""
    model = _Classifier()
    k_init, k_batch, k_fit = jax.random.split(key, 3)

    def loss(p, batch, _):
        xb, yb = batch
        logp = jax.nn.log_softmax(model.apply(p, xb))
        return -jnp.mean(jnp.take_along_axis(logp, yb[:, None], 1)), {}

    kernel = gradient_kernel(loss, optax.adam(3e-3))
    res = fit(kernel, kernel.init(model.init(k_init, x[:1])), k_fit, steps,
              batches=minibatches(k_batch, (x, y), batch_size), progress=False)
    return res.state.params, model.apply

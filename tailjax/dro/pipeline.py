"""Recipes shared by GAS-DRO's experiments, demo and notebook: pre-train the nominal
generators (DDPM, VAE) by maximum likelihood, build the predictors' per-sample losses, and
evaluate a predictor on several test sets. Thin wrappers over the pure pieces of
:mod:`tailjax.nn` and :mod:`tailjax.dro`; nothing here is needed to use those.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from tailjax.nn import ddpm as _ddpm
from tailjax.nn import vae as _vae

__all__ = [
    "train_generator",
    "train_ddpm",
    "train_vae",
    "forecast_loss",
    "classification_loss",
    "evaluate",
    "accuracy",
]


def train_generator(
    key: jax.Array,
    loss: Callable[[Any, jax.Array, Any], jax.Array],
    params: Any,
    data: Any,
    steps: int,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    chunk: int = 200,
) -> tuple[Any, np.ndarray]:
    """Adam on ``loss(params, key, batch)`` over random minibatches of ``data``; returns the
    parameters and the loss trace. Steps run ``chunk`` at a time inside ``lax.scan``."""
    opt = optax.adam(learning_rate)
    arrays = jax.tree_util.tree_map(jnp.asarray, data)
    n = jax.tree_util.tree_leaves(arrays)[0].shape[0]
    batch_size = min(batch_size, n)

    @jax.jit
    def run(state, keys):
        def step(carry, k):
            p, o = carry
            k_idx, k_loss = jax.random.split(k)
            idx = jax.random.choice(k_idx, n, (batch_size,), replace=False)
            batch = jax.tree_util.tree_map(lambda a: a[idx], arrays)
            value, g = jax.value_and_grad(loss)(p, k_loss, batch)
            u, o = opt.update(g, o, p)
            return (optax.apply_updates(p, u), o), value
        return jax.lax.scan(step, state, keys)

    state, trace = (params, opt.init(params)), []
    keys = jax.random.split(key, steps)
    for start in range(0, steps, chunk):
        state, values = run(state, keys[start:start + chunk])
        trace.append(np.asarray(values))
    return state[0], np.concatenate(trace) if trace else np.zeros(0)


def train_ddpm(key, apply_fn, params, schedule, data, steps, batch_size=128, learning_rate=1e-3,
               weighting="simple"):
    """Fit a DDPM's noise network to ``data`` (array, or ``(x, cond)``) with J_DM."""
    def loss(p, k, batch):
        x, cond = batch if isinstance(batch, (tuple, list)) else (batch, None)
        return _ddpm.dm_loss(apply_fn, p, k, x, schedule, weighting, cond)
    return train_generator(key, loss, params, data, steps, batch_size, learning_rate)


def train_vae(key, vae, params, data, steps, batch_size=128, learning_rate=1e-3):
    """Fit a VAE to ``data`` (array, or ``(x, cond)``) by maximising the ELBO."""
    def loss(p, k, batch):
        x, cond = batch if isinstance(batch, (tuple, list)) else (batch, None)
        return _vae.vae_loss(vae, p, k, x, cond)
    return train_generator(key, loss, params, data, steps, batch_size, learning_rate)


def forecast_loss(model: nn.Module) -> Callable[[Any, jax.Array], jax.Array]:
    """f(w, window) = (model(window[:-1]) - window[-1])^2 for a one-step forecaster."""
    def loss(w, window):
        return (model.apply(w, window[:-1]) - window[-1]) ** 2
    return loss


def classification_loss(model: nn.Module, num_classes: int = 10) -> Callable[[Any, Any], jax.Array]:
    """f(w, (image, onehot)) = mean squared error between the scores and the one-hot label
    (the GAS-DRO paper's digits loss)."""
    def loss(w, sample):
        image, onehot = sample
        return jnp.mean((model.apply(w, image) - onehot) ** 2)
    return loss


def evaluate(
    loss_fn: Callable[[Any, Any], jax.Array], params: Any, datasets: Mapping[str, Any], chunk: int = 4096
) -> dict[str, float]:
    """Mean per-sample loss of ``params`` on each data set."""
    batched = jax.jit(jax.vmap(loss_fn, in_axes=(None, 0)))
    out = {}
    for name, data in datasets.items():
        n = jax.tree_util.tree_leaves(data)[0].shape[0]
        total = 0.0
        for s in range(0, n, chunk):
            part = jax.tree_util.tree_map(lambda a: jnp.asarray(a[s:s + chunk]), data)
            total += float(jnp.sum(batched(params, part)))
        out[name] = total / n
    return out


def accuracy(model: nn.Module, params: Any, images: Any, labels: Any) -> float:
    """Share of ``images`` whose arg-max score is the label."""
    scores = jax.jit(model.apply)(params, jnp.asarray(images))
    return float(jnp.mean(jnp.argmax(scores, -1) == jnp.asarray(labels)))

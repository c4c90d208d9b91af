"""Recipes shared by the GAS-DRO benchmarks: pre-train the nominal generators (DDPM, VAE) by
maximum likelihood, build the predictors' per-sample losses, evaluate a predictor on several
test sets. Thin wrappers over :mod:`tailjax.training`, :mod:`tailjax.nn` and
:mod:`tailjax.dro`.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from tailjax import training
from tailjax.nn import ddpm, vae as vae_lib

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
    loss: Callable[[Any, Any, jax.Array], tuple[jax.Array, Any]],
    params: Any,
    data: Any,
    *,
    num_steps: int,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    progress: bool = False,
) -> tuple[Any, np.ndarray]:
    """Adam on ``loss(params, batch, key)`` over shuffled minibatches of ``data`` (one
    :func:`~tailjax.training.gradient_kernel` driven by :func:`~tailjax.training.fit`);
    returns the parameters and the loss trace (num_steps,)."""
    k_data, k_fit = jax.random.split(key)
    kernel = training.gradient_kernel(loss, optax.adam(learning_rate))
    res = training.fit(kernel, kernel.init(params), k_fit, num_steps,
                       batches=training.minibatches(k_data, data, batch_size), progress=progress,
                       description="generator")
    return res.state.params, res.history.get("loss", np.zeros(0))


def train_ddpm(key, apply_fn, params, schedule, data, *, num_steps, batch_size=128, learning_rate=1e-3,
               weighting="simple"):
    """Fit a DDPM's noise network ``apply_fn(params, x, t, cond)`` to ``data`` (array, or
    ``(x, cond)``) with J_DM."""
    loss = functools.partial(ddpm.dm_loss, apply_fn=apply_fn, schedule=schedule, weighting=weighting)
    return train_generator(key, loss, params, data, num_steps=num_steps, batch_size=batch_size,
                           learning_rate=learning_rate)


def train_vae(key, vae, params, data, *, num_steps, batch_size=128, learning_rate=1e-3):
    """Fit a VAE to ``data`` (array, or ``(x, cond)``) by maximising the ELBO."""
    loss = functools.partial(vae_lib.vae_loss, vae=vae)
    return train_generator(key, loss, params, data, num_steps=num_steps, batch_size=batch_size,
                           learning_rate=learning_rate)


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

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
    "scorer",
    "accuracy",
    "persistence_mse",
    "seasonal_naive_mse",
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


def scorer(loss_fn: Callable[[Any, Any], jax.Array], data: Any, chunk: int = 1024) -> Callable[[Any], Any]:
    """``score(params)``: the mean per-sample loss on ``data`` (or, for a dict of data sets, a
    dict of means), compiled once: every set is cut into zero-padded, masked chunks of one
    shape, so early stopping's many evaluations and every test set share one compilation."""
    total = jax.jit(lambda w, part, mask: jnp.sum(mask * jax.vmap(loss_fn, in_axes=(None, 0))(w, part)))

    def chunks(d):
        n = jax.tree_util.tree_leaves(d)[0].shape[0]
        out = []
        for s in range(0, n, chunk):
            m = min(chunk, n - s)
            part = jax.tree_util.tree_map(
                lambda a: jnp.asarray(np.concatenate([a[s:s + m], np.repeat(a[s:s + 1], chunk - m, 0)])), d)
            out.append((part, jnp.asarray(np.arange(chunk) < m, np.float32)))
        return n, out

    sets = data if isinstance(data, dict) else {None: data}
    prepared = {k: chunks(v) for k, v in sets.items()}

    def score(params: Any) -> Any:
        means = {k: sum(float(total(params, part, mask)) for part, mask in parts) / n
                 for k, (n, parts) in prepared.items()}
        return means if isinstance(data, dict) else means[None]

    return score


def persistence_mse(windows: np.ndarray) -> float:
    """MSE of the persistence forecast (the next value is the last observed one) on windows
    (N, window + 1) whose last value is the target."""
    w = np.asarray(windows, np.float64)
    return float(np.mean((w[:, -1] - w[:, -2]) ** 2))


def seasonal_naive_mse(windows: np.ndarray, period: int = 24) -> float:
    """MSE of the seasonal-naive forecast (the value ``period`` steps before the target)."""
    w = np.asarray(windows, np.float64)
    if not 1 <= period < w.shape[1]:
        raise ValueError(f"period must lie in [1, {w.shape[1] - 1}], got {period}")
    return float(np.mean((w[:, -1] - w[:, -1 - period]) ** 2))


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

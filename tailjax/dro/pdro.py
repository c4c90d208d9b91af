"""P-DRO (Michel, Hashimoto & Neubig, 2021): a parametric generative adversary q_psi under a
KL constraint around the nominal model q_psi0 (the MLE of the data).

The adversary re-weights real data by likelihood ratios q_psi / q_psi0, normalised over the
minibatch (the paper's minibatch-level normalisation), pi_i = softmax_i(log q_psi(x_i) -
log q_psi0(x_i)). The predictor descends sum_i pi_i f(w, x_i); the adversary ascends
sum_i pi_i f(w, x_i) - tau KL(pi || uniform), the KL penalty (``kl_weight``, the paper's
tau) standing for the constraint. :func:`pdro_kernel` takes one step of each player, both
through :func:`tailjax.training.gradient_kernel` on :func:`reweighted_loss` and
:func:`pdro_adversary_loss`.

The adversary is any ``log_density(psi, feature)``; :func:`gmm_log_density` (a diagonal
Gaussian mixture, fitted by :func:`gmm_mle`) is the one the experiments use.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float

from tailjax import training
import numpy as np

from tailjax._checks import (
    check_int,
    check_positive,
    check_weights,
    is_concrete,
    nan_where,
    traced_bad_weights,
    traced_below_zero,
)
from tailjax.base import Kernel
from tailjax.dro.erm import check_batch, per_sample_losses

__all__ = [
    "gmm_log_density",
    "gmm_mle",
    "reweighted_loss",
    "pdro_adversary_loss",
    "PDroAdversaryBatch",
    "PDroState",
    "PDroInfo",
    "pdro_kernel",
]


def gmm_log_density(psi: dict, x: Float[Array, " d"]) -> Float[Array, ""]:
    """log of sum_m softmax(logits)_m N(x; means_m, diag exp(log_stds_m)^2), x of shape (d,)."""
    d = psi["means"].shape[-1]
    if jnp.shape(x) != (d,):
        raise ValueError(f"x must have shape ({d},) (the mixture's dimension), got {jnp.shape(x)}")
    logw = jax.nn.log_softmax(psi["logits"])
    z = (x - psi["means"]) / jnp.exp(psi["log_stds"])
    comp = -0.5 * jnp.sum(z**2, -1) - jnp.sum(psi["log_stds"], -1) - 0.5 * x.shape[-1] * math.log(2 * math.pi)
    return jax.nn.logsumexp(logw + comp)


def gmm_mle(key: jax.Array, x: Float[Array, "n d"], *, components: int = 4, iters: int = 100,
            min_std: float = 1e-3) -> dict:
    """Maximum-likelihood diagonal Gaussian mixture of the rows of ``x`` (n, d) by ``iters``
    EM iterations from ``components`` rows drawn with ``key``; stds floored at ``min_std``
    (NaN everywhere for a traced ``min_std <= 0``).

    Returns ``{"logits": (m,), "means": (m, d), "log_stds": (m, d)}`` for
    :func:`gmm_log_density`.
    """
    if jnp.ndim(x) != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"x must have shape (n, d) with n, d >= 1, got {jnp.shape(x)}")
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):  # integer data: the EM carry is float
        x = jnp.asarray(x).astype(jnp.result_type(float))
    if is_concrete(x) and not np.all(np.isfinite(np.asarray(x))):
        raise ValueError("x holds NaN or infinite values")
    n, d = x.shape
    check_positive(min_std, "min_std")
    iters = check_int(iters, "iters", minimum=0)
    components = check_int(components, "components")
    if not 1 <= components <= n:
        raise ValueError(f"components must lie in [1, {n}], got {components}")
    means = x[jax.random.choice(key, n, (components,), replace=False)]
    std0 = jnp.std(x, axis=0) + min_std
    psi = {
        "logits": jnp.zeros((components,), x.dtype),
        "means": means,
        "log_stds": jnp.log(jnp.broadcast_to(std0, (components, d))),
    }

    def em(psi, _):
        logw = jax.nn.log_softmax(psi["logits"])
        z = (x[:, None, :] - psi["means"]) / jnp.exp(psi["log_stds"])
        comp = -0.5 * jnp.sum(z**2, -1) - jnp.sum(psi["log_stds"], -1)
        resp = jax.nn.softmax(logw + comp, axis=1)  # (n, m)
        nk = jnp.sum(resp, 0) + 1e-10
        means = resp.T @ x / nk[:, None]
        var = resp.T @ (x**2) / nk[:, None] - means**2
        stds = jnp.sqrt(jnp.maximum(var, min_std**2))
        return {"logits": jnp.log(nk / n), "means": means, "log_stds": jnp.log(stds)}, None

    psi, _ = jax.lax.scan(em, psi, None, length=iters)
    return nan_where(traced_below_zero(min_std, allow_zero=False), psi)


def _kl_uniform(pi):
    """KL(pi || uniform) of weights pi (n,)."""
    return jnp.sum(pi * (jnp.log(pi + 1e-30) + math.log(pi.shape[0])))


def _weights(log_density, features, psi, nominal, samples):
    """pi = softmax_i(log q_psi(x_i) - log q_psi0(x_i)) over the batch."""
    feats = jax.vmap(features)(samples)
    ell = jax.vmap(log_density, in_axes=(None, 0))(psi, feats)
    ell0 = jax.vmap(log_density, in_axes=(None, 0))(nominal, feats)
    return jax.nn.softmax(ell - jax.lax.stop_gradient(ell0))


def reweighted_loss(
    params: Any, batch: tuple[Any, Float[Array, " n"]], key: jax.Array, *,
    loss_fn: Callable[[Any, Any], jax.Array],
) -> tuple[Array, dict]:
    """sum_i pi_i f(w, x_i) for ``batch = (samples, weights)``: the P-DRO predictor's loss,
    ``(value, {})``; the weights (n,) are constants, finite, >= 0 and not all zero
    (``ValueError``; NaN for traced ones)."""
    del key
    samples, weights = batch
    n = check_batch(samples)
    if jnp.shape(weights) != (n,):
        raise ValueError(f"weights must have shape ({n},) (one per sample), got {jnp.shape(weights)}")
    check_weights(weights, weights)
    value = jnp.sum(jax.lax.stop_gradient(weights) * per_sample_losses(loss_fn, params, samples))
    return nan_where(traced_bad_weights(weights), value), {}


class PDroAdversaryBatch(NamedTuple):
    samples: Any  # pytree, leading axis n
    losses: Array  # f(w, x_i) of the current predictor, (n,)
    nominal: Any  # psi0


def pdro_adversary_loss(
    psi: Any, batch: PDroAdversaryBatch, key: jax.Array, *,
    log_density: Callable[[Any, jax.Array], jax.Array],
    features: Callable[[Any], jax.Array] | None = None,
    kl_weight: float = 0.1,
) -> tuple[Array, dict]:
    """-(sum_i pi_i f_i - kl_weight KL(pi || uniform)) with pi the adversary's batch
    weights: the P-DRO adversary's loss (to minimise), ``(value, {"kl": KL})``.

    ``features(sample)`` maps one sample to the adversary's input (default: the sample);
    ``kl_weight`` is the paper's tau (a traced one <= 0 gives NaN); ``batch.losses`` has one
    value per sample.
    """
    del key
    check_positive(kl_weight, "kl_weight")
    n = check_batch(batch.samples, "batch.samples")
    if jnp.shape(batch.losses) != (n,):
        raise ValueError(f"batch.losses must have shape ({n},) (one per sample), got {jnp.shape(batch.losses)}")
    pi = _weights(log_density, features or (lambda s: s), psi, batch.nominal, batch.samples)
    kl = _kl_uniform(pi)
    out = -(jnp.sum(pi * jax.lax.stop_gradient(batch.losses)) - kl_weight * kl), {"kl": kl}
    return nan_where(traced_below_zero(kl_weight, allow_zero=False), out)


class PDroState(NamedTuple):
    predictor: training.TrainState  # w
    adversary: training.TrainState  # psi
    nominal: Any  # psi0, fixed


class PDroInfo(NamedTuple):
    loss: Array  # re-weighted loss sum_i pi_i f_i, before the update
    kl: Array  # KL(pi || uniform) of the batch weights
    grad_norm: Array  # of the predictor's loss
    adversary_grad_norm: Array


def pdro_kernel(
    loss_fn: Callable[[Any, Any], jax.Array],
    log_density: Callable[[Any, jax.Array], jax.Array],
    optimizer: optax.GradientTransformation,
    adversary_optimizer: optax.GradientTransformation,
    *,
    kl_weight: float = 0.1,
    features: Callable[[Any], jax.Array] | None = None,
) -> Kernel:
    """P-DRO as a :class:`~tailjax.base.Kernel`.

    ``init(params, psi0) -> PDroState``; ``step(state, key, batch) -> (PDroState, PDroInfo)``
    with ``batch`` a minibatch of samples (pytree, leading axis n): one predictor step on
    :func:`reweighted_loss` under the current adversary's weights, and one adversary step on
    :func:`pdro_adversary_loss` against the current predictor's losses.
    ``features(sample)`` maps one sample to the adversary's input (default: the sample);
    ``kl_weight`` is the paper's tau.
    """
    check_positive(kl_weight, "kl_weight")
    features = features or (lambda s: s)
    predictor = training.gradient_kernel(functools.partial(reweighted_loss, loss_fn=loss_fn), optimizer)
    adversary = training.gradient_kernel(
        functools.partial(pdro_adversary_loss, log_density=log_density, features=features, kl_weight=kl_weight),
        adversary_optimizer,
    )

    def init(params: Any, psi0: Any) -> PDroState:
        return PDroState(predictor.init(params), adversary.init(psi0), psi0)

    def step(state: PDroState, key: jax.Array, batch: Any) -> tuple[PDroState, PDroInfo]:
        k_w, k_psi = jax.random.split(key)
        pi = jax.lax.stop_gradient(_weights(log_density, features, state.adversary.params, state.nominal, batch))
        losses = jax.lax.stop_gradient(per_sample_losses(loss_fn, state.predictor.params, batch))
        w_state, w_info = predictor.step(state.predictor, k_w, (batch, pi))
        psi_state, psi_info = adversary.step(state.adversary, k_psi, PDroAdversaryBatch(batch, losses, state.nominal))
        info = PDroInfo(w_info.loss, _kl_uniform(pi), w_info.grad_norm, psi_info.grad_norm)
        return PDroState(w_state, psi_state, state.nominal), info

    return Kernel(init, step)

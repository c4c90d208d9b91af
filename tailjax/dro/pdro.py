"""P-DRO (Michel, Hashimoto & Neubig, 2021): a parametric generative adversary q_psi under a
KL constraint around the nominal model q_psi0 (the MLE of the data).

The adversary re-weights real data by likelihood ratios q_psi / q_psi0, normalised over the
minibatch (the paper's minibatch-level normalisation), pi_i = softmax_i(log q_psi(x_i) -
log q_psi0(x_i)). The predictor descends sum_i pi_i f(w, x_i); the adversary ascends
sum_i pi_i f(w, x_i) - tau KL(pi || uniform), the KL penalty standing for the constraint.

The adversary is any ``log_density(psi, feature)``; :func:`gmm_log_density` (a diagonal
Gaussian mixture, fitted by :func:`fit_gmm`) is the one the experiments use.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from tailjax._checks import check_positive
from tailjax.dro.predictor import batch_loss

__all__ = ["gmm_log_density", "fit_gmm", "PDroState", "PDroInfo", "pdro"]


def gmm_log_density(psi: dict, x: jax.Array) -> jax.Array:
    """log of sum_m softmax(logits)_m N(x; means_m, diag exp(log_stds_m)^2), x of shape (d,)."""
    logw = jax.nn.log_softmax(psi["logits"])
    z = (x - psi["means"]) / jnp.exp(psi["log_stds"])
    comp = -0.5 * jnp.sum(z**2, -1) - jnp.sum(psi["log_stds"], -1) - 0.5 * x.shape[-1] * math.log(2 * math.pi)
    return jax.nn.logsumexp(logw + comp)


def fit_gmm(key: jax.Array, x: jax.Array, components: int = 4, iters: int = 100,
            min_std: float = 1e-3) -> dict:
    """Maximum-likelihood diagonal Gaussian mixture of the rows of ``x`` (n, d) by EM."""
    n, d = x.shape
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
    return psi


class PDroState(NamedTuple):
    params: Any
    opt_state: Any
    adversary: Any
    adversary_opt_state: Any
    nominal: Any  # psi0, fixed


class PDroInfo(NamedTuple):
    loss: jax.Array  # re-weighted loss sum_i pi_i f_i
    kl: jax.Array  # KL(pi || uniform) of the batch weights


def pdro(
    loss_fn: Callable[[Any, Any], jax.Array],
    log_density: Callable[[Any, jax.Array], jax.Array],
    optimizer: optax.GradientTransformation,
    adversary_optimizer: optax.GradientTransformation,
    tau: float = 0.1,
    features: Callable[[Any], jax.Array] | None = None,
):
    """P-DRO kernel ``(init, step)``: ``init(params, psi0)``, ``step(state, key, batch)``.

    ``features(sample)`` maps one sample to the adversary's input (default: the sample).
    """
    check_positive(tau, "tau")
    features = features or (lambda s: s)

    def init(params, psi0):
        return PDroState(params, optimizer.init(params), psi0, adversary_optimizer.init(psi0), psi0)

    def weights(psi, nominal, batch):
        feats = jax.vmap(features)(batch)
        ell = jax.vmap(log_density, in_axes=(None, 0))(psi, feats)
        ell0 = jax.vmap(log_density, in_axes=(None, 0))(nominal, feats)
        return jax.nn.softmax(ell - jax.lax.stop_gradient(ell0))

    def kl_uniform(pi):
        return jnp.sum(pi * (jnp.log(pi + 1e-30) + math.log(pi.shape[0])))

    def step(state: PDroState, key, batch):
        del key
        pi = jax.lax.stop_gradient(weights(state.adversary, state.nominal, batch))

        def predictor_loss(w):
            return jnp.sum(pi * batch_loss(loss_fn, w, batch))

        value, g_w = jax.value_and_grad(predictor_loss)(state.params)
        losses = jax.lax.stop_gradient(batch_loss(loss_fn, state.params, batch))

        def adversary_loss(psi):
            p = weights(psi, state.nominal, batch)
            return -(jnp.sum(p * losses) - tau * kl_uniform(p))

        g_psi = jax.grad(adversary_loss)(state.adversary)
        upd_w, opt_w = optimizer.update(g_w, state.opt_state, state.params)
        upd_psi, opt_psi = adversary_optimizer.update(g_psi, state.adversary_opt_state, state.adversary)
        new = PDroState(optax.apply_updates(state.params, upd_w), opt_w,
                        optax.apply_updates(state.adversary, upd_psi), opt_psi, state.nominal)
        return new, PDroInfo(value, kl_uniform(pi))

    return init, step

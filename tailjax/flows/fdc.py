"""FDC (Flow Density Control) baseline for CVaR fine-tuning, on a grid and at model level.

Distribution-level operator (TFFT App. C.2; beta is TFFT's quantile level, alpha the KL
temperature):

    p_{k+1} proportional to p_k^(1 - alpha/eta_k) p_pre^(alpha/eta_k) exp(g_k / eta_k),
    g_k = [r - VaR_beta(p_k)]_+ / (1 - beta)   (right; left: -[VaR_beta(p_k) - r]_+ / beta),

with an increasing eta_k >= alpha. Its fixed point is TFFT's target
p* proportional to p_pre exp(r*_{t*} / alpha) with t* = VaR_beta(p*) (TFFT Proposition 5.2).
:func:`fdc_grid` runs it in log space on a grid of cells, with the VaR as a weighted
quantile, and reports KL/JS/TV distances to p* and the thresholds t_k -> t*.

:func:`fdc_fine_tune` is the model-level version: K rounds of adjoint matching, each with
VaR_beta recomputed from samples of the current model.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.scipy.special import logsumexp
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import check_open_unit, check_positive, is_concrete
from tailjax.flows.finetune import check_reward_values, fine_tune
from tailjax.flows.sde import memoryless_sample
from tailjax.flows.tfft import tfft
from tailjax.risk.empirical import var
from tailjax.risk.threshold import pseudo_reward, solve_threshold

__all__ = ["GridDistances", "grid_distances", "FDCGridResult", "fdc_grid", "FDCResult", "fdc_fine_tune"]


class GridDistances(NamedTuple):
    kl: Array  # KL(p || q)
    js: Array  # Jensen-Shannon divergence (natural log)
    tv: Array  # total variation


def grid_distances(log_p: Float[ArrayLike, "... g"], log_q: Float[ArrayLike, " g"]) -> GridDistances:
    """KL(p||q), JS(p, q) and TV(p, q) of normalised log-probabilities on the same cells."""
    log_p, log_q = jnp.asarray(log_p), jnp.asarray(log_q)
    p, q = jnp.exp(log_p), jnp.exp(log_q)
    kl = jnp.sum(jnp.where(p > 0, p * (log_p - log_q), 0.0), axis=-1)
    log_m = jnp.logaddexp(log_p, log_q) - jnp.log(2.0)
    js = 0.5 * jnp.sum(jnp.where(p > 0, p * (log_p - log_m), 0.0), axis=-1) + 0.5 * jnp.sum(
        jnp.where(q > 0, q * (log_q - log_m), 0.0), axis=-1
    )
    tv = 0.5 * jnp.sum(jnp.abs(p - q), axis=-1)
    return GridDistances(kl, js, tv)


class FDCGridResult(NamedTuple):
    log_p: Array  # (K + 1, g) iterates p_0 = p_init, ..., p_K
    thresholds: Array  # (K + 1,) VaR_beta(p_k)
    distances: GridDistances  # each (K + 1,), to p*
    log_p_star: Array  # (g,) TFFT's target
    t_star: Array  # TFFT's threshold (the beta-quantile of p*)


def _pseudo(r, t, beta, side):
    return pseudo_reward(r, t, beta, side)


def _beta_quantile(r, beta, side, weights=None):
    """VaR_beta in TFFT's convention: the upper VaR at tail mass 1 - beta (right) or the
    lower VaR at tail mass beta (left)."""
    if side == "right":
        return var(r, 1.0 - beta, weights=weights)
    return var(r, beta, weights=weights, side="lower")


def fdc_grid(
    log_p_pre: Float[ArrayLike, " g"],
    rewards: Float[ArrayLike, " g"],
    *,
    beta: float,
    alpha: float,
    num_iterations: int = 50,
    eta: Float[ArrayLike, " k"] | None = None,
    side: str = "right",
    log_p_init: Float[ArrayLike, " g"] | None = None,
) -> FDCGridResult:
    """Run the FDC operator on grid cells.

    Args:
      log_p_pre: ``(g,)`` log-probabilities of the cells under the prior (normalised inside).
      rewards: ``(g,)`` reward of each cell.
      beta: TFFT quantile level in (0, 1).
      alpha: KL temperature > 0.
      num_iterations: K.
      eta: ``(K,)`` step parameters eta_k >= alpha; default alpha (1 + k / 10), increasing.
      side: ``"right"`` or ``"left"`` CVaR.
      log_p_init: starting distribution (the prior by default).
    """
    check_open_unit(beta, "beta")
    check_positive(alpha, "alpha")
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")
    log_pre = jnp.asarray(log_p_pre)
    r = jnp.asarray(rewards, log_pre.dtype)
    if log_pre.ndim != 1 or r.shape != log_pre.shape:
        raise ValueError(f"log_p_pre and rewards must be 1-D of one shape, got {log_pre.shape}, {r.shape}")
    if num_iterations < 1:
        raise ValueError(f"num_iterations must be >= 1, got {num_iterations}")
    log_pre = log_pre - logsumexp(log_pre)
    k = jnp.arange(num_iterations).astype(log_pre.dtype)
    eta = alpha * (1.0 + k / 10.0) if eta is None else jnp.asarray(eta, log_pre.dtype)
    if eta.shape != (num_iterations,):
        raise ValueError(f"eta must have shape ({num_iterations},), got {eta.shape}")
    if is_concrete(eta) and float(jnp.min(eta)) < alpha:
        raise ValueError(f"eta must be >= alpha = {alpha} everywhere, got min {float(jnp.min(eta))}")

    def quantile(log_p):
        return _beta_quantile(r, beta, side, jnp.exp(log_p))

    def body(log_p, eta_k):
        t_k = quantile(log_p)
        gamma = alpha / eta_k
        new = (1.0 - gamma) * log_p + gamma * log_pre + _pseudo(r, t_k, beta, side) / eta_k
        new = new - logsumexp(new)
        return new, (new, t_k)

    log_p0 = log_pre if log_p_init is None else jnp.asarray(log_p_init, log_pre.dtype) - logsumexp(jnp.asarray(log_p_init, log_pre.dtype))
    last, (iterates, ts) = jax.lax.scan(body, log_p0, eta)
    log_ps = jnp.concatenate([log_p0[None], iterates], axis=0)
    thresholds = jnp.concatenate([ts, quantile(last)[None]])
    t_star = solve_threshold(r, beta, alpha, side, weights=jnp.exp(log_pre))
    log_star = log_pre + _pseudo(r, t_star, beta, side) / alpha
    log_star = log_star - logsumexp(log_star)
    return FDCGridResult(log_ps, thresholds, grid_distances(log_ps, log_star), log_star, t_star)


class FDCResult(NamedTuple):
    params: Any
    thresholds: Array  # (K,) VaR_beta of the model at the start of each round
    fits: list  # one FitResult per round


def fdc_fine_tune(
    key: Array,
    velocity_fn: Callable[[Any, Array, Array], Array],
    base_params: Any,
    reward_fn: Callable[[Array], Array],
    dim: int,
    *,
    beta: float,
    alpha: float = 1.0,
    side: str = "right",
    num_rounds: int = 5,
    steps_per_round: int = 200,
    num_var_samples: int = 10_000,
    optimizer: optax.GradientTransformation | None = None,
    grid_steps: int = 40,
    progress: bool = True,
    **adjoint_kwargs: Any,
) -> FDCResult:
    """Model-level FDC: ``num_rounds`` rounds of adjoint matching with a re-estimated VaR.

    Round k samples ``num_var_samples`` points from the current model, takes
    t_k = VaR_beta of their rewards, and fine-tunes (warm-started from the current
    parameters, base field = the pre-trained one, lambda = 1/alpha) towards
    p_pre exp(g_k / alpha) with g_k the pseudo-reward at t_k.

    What it approximates: the grid operator with eta_k = alpha for every k. The general
    eta_k > alpha keeps a factor (p_pre / p_k)^(alpha/eta_k), whose reward would need
    log p_k - log p_pre along samples, i.e. ODE likelihoods of the current model; with
    eta_k = alpha that factor is 1 and each round is one exact FDC step. The rounds iterate
    t_{k+1} = VaR_beta(p_pre exp(g_{t_k} / alpha)), whose fixed point is TFFT's t* and p*.
    Each round's fine-tune is finite, so the iterate is only approximately the round's target.
    """
    check_open_unit(beta, "beta")
    check_positive(alpha, "alpha")
    if num_rounds < 1 or steps_per_round < 1:
        raise ValueError(f"num_rounds and steps_per_round must be >= 1, got {num_rounds}, {steps_per_round}")
    optimizer = optimizer or optax.adam(1e-4)
    base = lambda x, t: velocity_fn(base_params, x, t)
    params, thresholds, fits = base_params, [], []
    for k in range(num_rounds):
        key, key_var, key_tune = jax.random.split(key, 3)
        samples = memoryless_sample(key_var, velocity_fn, params, num_var_samples, dim, num_steps=grid_steps)
        rewards = check_reward_values(reward_fn, samples)
        t_k = _beta_quantile(rewards, beta, side)
        thresholds.append(t_k)
        kernel = tfft(velocity_fn, base, reward_fn, optimizer, dim, beta=beta, alpha=alpha,
                      side=side, t_star=t_k, num_steps=grid_steps, **adjoint_kwargs)
        result = fine_tune(key_tune, kernel, params, steps_per_round, progress=progress,
                           description=f"FDC round {k + 1}/{num_rounds}")
        params = result.state.params
        fits.append(result)
    return FDCResult(params, jnp.stack(thresholds), fits)

"""FDC (Flow Density Control) baseline for CVaR fine-tuning, on a grid and at model level.

Distribution-level operator (TFFT App. C.2; beta is TFFT's ``quantile_level``, alpha its
``temperature``):

    p_{k+1} proportional to p_k^(1 - alpha/eta_k) p_pre^(alpha/eta_k) exp(g_k / eta_k),
    g_k = [r - VaR_beta(p_k)]_+ / (1 - beta)   (upper; lower: -[VaR_beta(p_k) - r]_+ / beta),

with an increasing eta_k >= alpha. Its fixed point is TFFT's target
p* proportional to p_pre exp(r*_{t*} / alpha) with t* = VaR_beta(p*) (TFFT Proposition 5.2).
:func:`fdc_grid` runs it in log space on a grid of cells, with the VaR as a weighted
quantile, and reports KL/JS/TV distances to p* and the thresholds t_k -> t*. On a grid the
beta-quantile of p* is an interval between two cells' rewards that contains t*; the VaR
takes its lower end, so the iterates settle within the grid's resolution of p*.

:func:`fdc_fine_tune` is the model-level version: K rounds of adjoint matching, each with
VaR_beta recomputed from samples of the current model and the same eta_k schedule, each
round one :func:`~tailjax.flows.finetune.fit_adjoint_matching` run (so each round can
checkpoint and a rerun resumes).
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.special import logsumexp
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import check_positive, is_concrete, nan_where, traced_out_of_range
from tailjax.flows._fields import cast_field, draw_contexts, event_shape
from tailjax.flows.adjoint import adjoint_matching
from tailjax.flows.finetune import check_reward_values, fit_adjoint_matching
from tailjax.flows.sde import memoryless_sample
from tailjax.flows.stage1 import check_tfft
from tailjax.risk.empirical import var
from tailjax.risk.threshold import pseudo_reward, solve_threshold

__all__ = [
    "GridDistances",
    "grid_distances",
    "default_eta",
    "FDCGridResult",
    "fdc_operator",
    "fdc_grid",
    "FDCResult",
    "fdc_fine_tune",
]


class GridDistances(NamedTuple):
    kl: Array  # KL(p || q)
    js: Array  # Jensen-Shannon divergence (natural log)
    tv: Array  # total variation


def grid_distances(log_p: Float[ArrayLike, "... g"], log_q: Float[ArrayLike, " g"]) -> GridDistances:
    """KL(p||q), JS(p, q) and TV(p, q) of normalised log-probabilities on the same cells.

    A row of ``log_p`` with a NaN (or any NaN in ``log_q``) gives NaN distances for that row."""
    log_p, log_q = jnp.asarray(log_p), jnp.asarray(log_q)
    if log_q.ndim != 1 or log_q.shape[0] == 0:
        raise ValueError(f"log_q must be a non-empty vector (g,), got shape {log_q.shape}")
    if log_p.ndim < 1 or log_p.shape[-1] != log_q.shape[0]:
        raise ValueError(f"log_p must have shape (..., {log_q.shape[0]}) to match log_q, got {log_p.shape}")
    p, q = jnp.exp(log_p), jnp.exp(log_q)
    kl = jnp.sum(jnp.where(p > 0, p * (log_p - log_q), 0.0), axis=-1)
    log_m = jnp.logaddexp(log_p, log_q) - jnp.log(2.0)
    js = 0.5 * jnp.sum(jnp.where(p > 0, p * (log_p - log_m), 0.0), axis=-1) + 0.5 * jnp.sum(
        jnp.where(q > 0, q * (log_q - log_m), 0.0), axis=-1
    )
    tv = 0.5 * jnp.sum(jnp.abs(p - q), axis=-1)
    nan = jnp.any(jnp.isnan(log_p), axis=-1) | jnp.any(jnp.isnan(log_q))
    return nan_where(nan, GridDistances(kl, js, tv))


def default_eta(num_iterations: int, temperature: float, dtype: Any = None) -> Float[Array, " k"]:
    """eta_k = alpha (1 + sqrt(k)), k = 0..K-1 (alpha: ``temperature``): a full first step,
    then shrinking steps. ``temperature`` <= 0 raises (NaN when traced)."""
    if num_iterations < 1:
        raise ValueError(f"num_iterations must be >= 1, got {num_iterations}")
    check_positive(temperature, "temperature")
    k = jnp.arange(num_iterations).astype(dtype or jnp.result_type(float))
    return nan_where(traced_out_of_range(temperature, high=float("inf")), temperature * (1.0 + jnp.sqrt(k)))


class FDCGridResult(NamedTuple):
    log_p: Array  # (K + 1, g) iterates p_0 = p_init, ..., p_K
    thresholds: Array  # (K + 1,) VaR_beta(p_k)
    distances: GridDistances  # each (K + 1,), to p*
    log_p_star: Array  # (g,) TFFT's target
    t_star: Array  # TFFT's threshold (the beta-quantile of p*)


def _beta_quantile(r, beta, side, weights=None):
    """VaR_beta in TFFT's convention: the upper VaR at tail mass 1 - beta (upper) or the
    lower VaR at tail mass beta (lower)."""
    if side == "upper":
        return var(r, 1.0 - beta, weights=weights)
    return var(r, beta, weights=weights, side="lower")


def fdc_operator(
    log_p: Float[ArrayLike, " g"],
    log_p_pre: Float[ArrayLike, " g"],
    rewards: Float[ArrayLike, " g"],
    t: Float[ArrayLike, ""],
    eta: Float[ArrayLike, ""],
    *,
    quantile_level: float,
    temperature: float,
    side: str = "upper",
) -> Float[Array, " g"]:
    """One FDC step at a given threshold ``t`` on grid cells ``(g,)``: normalised
    (1 - alpha/eta) log p + (alpha/eta) log p_pre + r*_t / eta (beta: ``quantile_level``,
    alpha: ``temperature``).

    Cells of zero probability (``-inf`` log-probabilities) stay at zero; at eta = alpha the
    first term vanishes (never 0 * -inf). ``eta`` must be >= ``temperature`` > 0; out-of-range
    scalars raise (NaN when traced)."""
    check_tfft(quantile_level, temperature, side)
    log_p = jnp.asarray(log_p)
    for name, a in (("log_p", log_p), ("log_p_pre", log_p_pre), ("rewards", rewards)):
        if jnp.ndim(a) != 1 or jnp.shape(a)[0] == 0 or jnp.shape(a) != log_p.shape[-1:]:
            raise ValueError(f"{name} must be a non-empty vector (g,) like log_p, got shape {jnp.shape(a)}")
    check_positive(eta, "eta")
    if is_concrete(eta) and is_concrete(temperature) and float(eta) < float(temperature):
        raise ValueError(f"eta must be >= temperature = {float(temperature)}, got {float(eta)}")
    bad = (traced_out_of_range(temperature, high=float("inf"))
           | (False if is_concrete(eta) and is_concrete(temperature) else ~(jnp.asarray(eta) >= temperature)))
    gamma = jnp.asarray(temperature / eta, log_p.dtype)
    keep = jnp.where(gamma < 1.0, (1.0 - gamma) * log_p, jnp.zeros_like(log_p))
    new = keep + gamma * jnp.asarray(log_p_pre, log_p.dtype)
    new = new + pseudo_reward(jnp.asarray(rewards, log_p.dtype), t, quantile_level, side) / eta
    return nan_where(bad, new - logsumexp(new))


def fdc_grid(
    log_p_pre: Float[ArrayLike, " g"],
    rewards: Float[ArrayLike, " g"],
    *,
    quantile_level: float,
    temperature: float,
    num_iterations: int = 50,
    eta: Float[ArrayLike, " k"] | None = None,
    side: str = "upper",
    log_p_init: Float[ArrayLike, " g"] | None = None,
) -> FDCGridResult:
    """Run the FDC operator on grid cells.

    Args:
      log_p_pre: ``(g,)`` log-probabilities of the cells under the prior (normalised inside);
        ``-inf`` marks cells of zero prior probability, which keep zero probability.
      rewards: ``(g,)`` reward of each cell.
      quantile_level: TFFT's quantile level beta in (0, 1).
      temperature: TFFT's KL temperature alpha > 0.
      num_iterations: K.
      eta: ``(K,)`` step parameters eta_k >= alpha; default alpha (1 + sqrt(k)), increasing
        (with eta_k = alpha the iteration can cycle between two distributions).
      side: ``"upper"`` (right-CVaR) or ``"lower"`` (left-CVaR).
      log_p_init: starting distribution (the prior by default).

    Concrete bad input raises ``ValueError`` naming the argument (NaN in ``log_p_pre`` or
    ``rewards`` included); traced, it makes the whole result NaN.
    """
    check_tfft(quantile_level, temperature, side)
    beta, alpha = quantile_level, temperature
    log_pre = jnp.asarray(log_p_pre)
    r = jnp.asarray(rewards, log_pre.dtype)
    if log_pre.ndim != 1 or log_pre.shape[0] == 0:
        raise ValueError(f"log_p_pre must be a non-empty vector (g,), got shape {log_pre.shape}")
    if r.shape != log_pre.shape:
        raise ValueError(f"rewards must have the shape {log_pre.shape} of log_p_pre, got {r.shape}")
    for name, a in (("log_p_pre", log_pre), ("rewards", r)):
        if is_concrete(a) and np.any(np.isnan(np.asarray(a))):
            raise ValueError(f"{name} contains NaN")
    if is_concrete(log_pre) and not np.any(np.isfinite(np.asarray(log_pre))):
        raise ValueError("log_p_pre has no cell of positive finite probability")
    bad = (traced_out_of_range(quantile_level) | traced_out_of_range(temperature, high=float("inf"))
           | jnp.any(jnp.isnan(log_pre)) | jnp.any(jnp.isnan(r)))
    if num_iterations < 1:
        raise ValueError(f"num_iterations must be >= 1, got {num_iterations}")
    log_pre = log_pre - logsumexp(log_pre)
    if eta is None:
        eta = default_eta(num_iterations, alpha, log_pre.dtype)
    else:
        if jnp.shape(eta) != (num_iterations,):
            raise ValueError(f"eta must have shape ({num_iterations},), got {jnp.shape(eta)}")
        if is_concrete(eta) and float(np.min(np.asarray(eta))) < alpha:
            raise ValueError(f"eta must be >= temperature = {alpha} everywhere, got min {float(np.min(np.asarray(eta)))}")
        eta = jnp.asarray(eta, log_pre.dtype)

    def quantile(log_p):
        return _beta_quantile(r, beta, side, jnp.exp(log_p))

    def body(log_p, eta_k):
        t_k = quantile(log_p)
        new = fdc_operator(log_p, log_pre, r, t_k, eta_k, quantile_level=beta, temperature=alpha, side=side)
        return new, (new, t_k)

    if log_p_init is None:
        log_p0 = log_pre
    else:
        log_p0 = jnp.asarray(log_p_init, log_pre.dtype) - logsumexp(jnp.asarray(log_p_init, log_pre.dtype))
    last, (iterates, ts) = jax.lax.scan(body, log_p0, eta)
    log_ps = jnp.concatenate([log_p0[None], iterates], axis=0)
    thresholds = jnp.concatenate([ts, quantile(last)[None]])
    t_star = solve_threshold(r, beta, alpha, side, weights=jnp.exp(log_pre))
    log_star = log_pre + pseudo_reward(r, t_star, beta, side) / alpha
    log_star = log_star - logsumexp(log_star)
    return nan_where(bad, FDCGridResult(log_ps, thresholds, grid_distances(log_ps, log_star), log_star, t_star))


class FDCResult(NamedTuple):
    params: Any
    thresholds: Array  # (K,) VaR_beta of the model at the start of each round
    coefficients: Array  # (K,) weights a_j of the final potential sum_j a_j g_{t_j}
    fits: list  # one FitResult per round


def fdc_fine_tune(
    key: Array,
    velocity_fn: Callable[[Any, Array, Array], Array],
    base_params: Any,
    reward_fn: Callable[..., Array],
    dim: int | tuple[int, ...],
    *,
    quantile_level: float,
    temperature: float = 1.0,
    side: str = "upper",
    contexts: Any = None,
    num_rounds: int = 5,
    steps_per_round: int = 200,
    eta: Float[ArrayLike, " k"] | None = None,
    num_var_samples: int = 10_000,
    optimizer: optax.GradientTransformation | None = None,
    grid_steps: int = 40,
    progress: bool = True,
    checkpoint_dir: str | os.PathLike | None = None,
    **adjoint_kwargs: Any,
) -> FDCResult:
    """Model-level FDC: ``num_rounds`` rounds of adjoint matching, each with a fresh VaR.

    Every FDC iterate has the form p_k proportional to p_pre exp(phi_k) with
    phi_{k+1} = (1 - alpha/eta_k) phi_k + g_{t_k} / eta_k and phi_0 = 0, so
    phi_k = sum_j a_j g_{t_j} is a weighted sum of pseudo-rewards at the past thresholds.
    Round k samples ``num_var_samples`` points from the current model, sets
    t_k = VaR_beta of their rewards, updates the weights a_j, and fine-tunes (warm-started
    from the current parameters, base field = the pre-trained one, lambda = 1) on the reward
    phi_{k+1} for ``steps_per_round`` steps. Each round's target is then exactly the grid
    operator's next iterate, with no density of the current model needed.

    What it approximates: the distribution-level operator of :func:`fdc_grid`, up to (i) the
    finite fine-tune of each round, which only approximately reaches its target, and (ii) the
    Monte Carlo VaR from ``num_var_samples`` samples of the current model (the grid version
    uses the exact weighted quantile). Default ``eta``: :func:`default_eta`.

    ``dim`` is d or an event shape (images). With ``contexts`` (an array of contexts or a
    sampler ``(key, n) -> (n, ...)``, as in :func:`~tailjax.flows.adjoint.adjoint_matching`) the
    fields take the context last, the reward is ``reward_fn(x, c)`` and the VaR is pooled
    over contexts drawn uniformly.

    ``quantile_level`` is TFFT's beta and ``temperature`` its alpha. ``checkpoint_dir`` holds
    one checkpoint per round (``round_01.ckpt``, ...); a rerun with the same arguments skips
    the finished rounds and resumes the interrupted one. ``adjoint_kwargs`` go to
    :func:`~tailjax.flows.adjoint.adjoint_matching`.
    """
    check_tfft(quantile_level, temperature, side)
    beta, alpha = quantile_level, temperature
    if num_rounds < 1 or steps_per_round < 1:
        raise ValueError(f"num_rounds and steps_per_round must be >= 1, got {num_rounds}, {steps_per_round}")
    if num_var_samples < 1:
        raise ValueError(f"num_var_samples must be >= 1, got {num_var_samples}")
    if grid_steps < 2:
        raise ValueError(f"grid_steps must be >= 2, got {grid_steps}")
    if eta is None:
        eta = np.asarray(default_eta(num_rounds, alpha))
    eta = np.asarray(eta, dtype=float)
    if eta.shape != (num_rounds,) or np.any(eta < alpha):
        raise ValueError(f"eta must have shape ({num_rounds},) with every eta_k >= temperature")
    optimizer = optax.adam(1e-4) if optimizer is None else optimizer
    shape = event_shape(dim)
    low = cast_field(velocity_fn, adjoint_kwargs.get("compute_dtype"))  # the base in the compute dtype
    base = lambda x, t, *c: low(base_params, x, t, *c)

    def potential(x, tp, *c):
        # tp = (thresholds (K,), weights (K,)); rounds not reached yet have weight 0.
        r = reward_fn(x, *c)
        return jnp.sum(tp[1].astype(r.dtype) * pseudo_reward(r, tp[0].astype(r.dtype), beta, side))

    example = (np.zeros(num_rounds, np.float32), np.zeros(num_rounds, np.float32))
    kernel = adjoint_matching(velocity_fn, base, potential, optimizer, shape, temperature=1.0, contexts=contexts,
                              num_steps=grid_steps, example_reward_params=example, **adjoint_kwargs)

    @jax.jit
    def sample(k, p):
        k_c, k_x = jax.random.split(k)
        c = draw_contexts(contexts, k_c, num_var_samples)
        x = memoryless_sample(k_x, velocity_fn, p, num_var_samples, shape, context=c, num_steps=grid_steps)
        return x, c
    config = {"method": "fdc", "quantile_level": beta, "temperature": alpha, "side": side,
              "num_rounds": num_rounds, "steps_per_round": steps_per_round, "eta": eta.tolist(),
              "num_var_samples": num_var_samples, "grid_steps": grid_steps,
              "adjoint": {k: (str(v) if k in ("compute_dtype", "dtype") else v)
                          for k, v in adjoint_kwargs.items() if k != "mesh"}}
    if shape != (dim,):
        config["event_shape"] = list(shape)
    params, thresholds, fits = base_params, np.zeros(num_rounds), []
    coefs = np.zeros(num_rounds)
    for k in range(num_rounds):
        key, key_var, key_tune = jax.random.split(key, 3)
        samples, c = sample(key_var, params)
        rewards = check_reward_values(reward_fn, samples, context=c)
        thresholds[k] = float(_beta_quantile(rewards, beta, side))
        coefs = (1.0 - alpha / eta[k]) * coefs
        coefs[k] = 1.0 / eta[k]
        tp = (thresholds.astype(np.float32), coefs.astype(np.float32))
        path = None if checkpoint_dir is None else pathlib.Path(checkpoint_dir) / f"round_{k + 1:02d}.ckpt"
        result = fit_adjoint_matching(
            key_tune, kernel, params, num_steps=steps_per_round, reward_params=tp, checkpoint_path=path,
            config={**config, "round": k + 1, "thresholds": tp[0], "coefficients": tp[1]},
            progress=progress, description=f"FDC round {k + 1}/{num_rounds}",
        )
        params = result.state.params
        fits.append(result)
    return FDCResult(params, jnp.asarray(thresholds), jnp.asarray(coefs), fits)

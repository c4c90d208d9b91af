"""TFFT (Algorithm 1 of "Efficient Tail-Aware Generative Optimization via Flow Model
Fine-Tuning"): CVaR fine-tuning in two stages.

Convention (TFFT's own, as in :mod:`tailjax.risk.threshold`): ``beta`` is a *quantile level*,
``alpha > 0`` the KL temperature (lambda = 1 / alpha), ``side="right"`` maximises the
right-CVaR_beta (mean of the top 1 - beta of rewards, tail_prob = 1 - beta) and
``side="left"`` the left-CVaR_beta (mean of the bottom beta, tail_prob = beta).

Stage 1 draws N offline samples from the pre-trained model, scores them and solves the 1-D
dual problem t* = argmin F_R (right) or argmax F_L (left) with
:func:`tailjax.risk.solve_threshold`. Stage 2 runs one adjoint-matching fine-tune on the
pseudo-reward r* = [r - t*]_+ / (1 - beta) (right) or -[t* - r]_+ / beta (left); the target is
p* proportional to p_pre exp(r* / alpha), and t* is the beta-quantile of p* (Theorems 4.1-4.2).

beta annealing (the paper's molecule setting) raises beta from near 0 to its target over the
first part of the fine-tune, re-solving t*(beta) on the same offline rewards; at beta -> 0 the
right pseudo-reward is r - min r, i.e. EXP-FT, so the run starts from the plain tilt.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import check_open_unit, check_positive
from tailjax.flows.adjoint import AdjointMatching, adjoint_matching
from tailjax.flows.finetune import check_reward_values, fine_tune
from tailjax.flows.sde import memoryless_sample
from tailjax.risk.threshold import ThresholdInfo, pseudo_reward, solve_threshold
from tailjax.training import FitResult

__all__ = [
    "TFFTThreshold",
    "tfft_threshold",
    "tfft_reward",
    "beta_annealing",
    "tfft",
    "TFFTResult",
    "tfft_fine_tune",
]


def _check_tfft(beta, alpha, side):
    check_open_unit(beta, "beta")
    check_positive(alpha, "alpha")
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left' (TFFT's convention), got {side!r}")


class TFFTThreshold(NamedTuple):
    t_star: Array
    rewards: Array  # (N,) rewards of the offline samples
    info: ThresholdInfo
    weights: Array | None = None  # (N,) normalised importance weights, if any


def tfft_threshold(
    key: Array,
    sample_fn: Callable[[Array, int], Array],
    reward_fn: Callable[[Array], Array],
    *,
    beta: float,
    alpha: float,
    side: str = "right",
    num_samples: int = 10_000,
    log_weight_fn: Callable[[Array], Array] | None = None,
) -> TFFTThreshold:
    """Stage 1: t* from ``num_samples`` offline samples ``sample_fn(key, n) -> (n, d)``.

    By default the samples come from the pre-trained model. ``log_weight_fn(samples) -> (n,)``
    turns Stage 1 into importance sampling: the samples then come from a proposal q and the
    log-weights are log p_pre - log q up to a constant (path weights of a fine-tuned model,
    :func:`~tailjax.flows.girsanov.memoryless_sample_and_log_weight`, or ODE likelihoods,
    :func:`~tailjax.flows.ode.ode_log_prob`). This matters when the target's tail lies beyond
    the pre-trained samples: F_R averages exp([r - t]_+ / (alpha (1 - beta))), which N plain
    samples under-estimate badly once the tilted mass sits where they never land.

    Raises ``ValueError`` if ``reward_fn`` returns a non-finite value on any sample.
    """
    _check_tfft(beta, alpha, side)
    if num_samples < 2:
        raise ValueError(f"num_samples must be >= 2, got {num_samples}")
    samples = sample_fn(key, num_samples)
    rewards = check_reward_values(reward_fn, samples)
    weights = None
    if log_weight_fn is not None:
        logw = jnp.asarray(log_weight_fn(samples), rewards.dtype)
        if logw.shape != rewards.shape or not bool(jnp.all(jnp.isfinite(logw))):
            raise ValueError("log_weight_fn must return finite log-weights of shape (num_samples,)")
        weights = jax.nn.softmax(logw)
    t_star, info = solve_threshold(rewards, beta, alpha, side, weights, return_info=True)
    return TFFTThreshold(t_star, rewards, info, weights)


def tfft_reward(
    reward_fn: Callable[[Array], Array], t_star: Float[ArrayLike, ""], beta: float, side: str
) -> Callable[[Array], Array]:
    """The per-sample pseudo-reward x -> r*(x) at threshold ``t_star``."""
    check_open_unit(beta, "beta")
    return lambda x: pseudo_reward(reward_fn(x), t_star, beta, side)


def beta_annealing(
    rewards: Float[ArrayLike, " n"],
    beta: float,
    alpha: float,
    side: str,
    num_steps: int,
    *,
    anneal_fraction: float = 0.5,
    beta_start: float | None = None,
    num_levels: int = 32,
    weights: Float[ArrayLike, " n"] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-step (beta_i, t*(beta_i)) for a fine-tune of ``num_steps`` steps, as numpy arrays.

    beta moves linearly from ``beta_start`` to ``beta`` over the first ``anneal_fraction`` of
    the steps (in ``num_levels`` equal stairs, each with its t* solved on the offline
    ``rewards``, with optional importance ``weights``), then stays at ``beta``. The default start is the EXP-FT end of each side:
    0.001 for the right tail (right-CVaR_0 is the mean) and 0.999 for the left tail.
    """
    _check_tfft(beta, alpha, side)
    if beta_start is None:
        beta_start = 1e-3 if side == "right" else 1.0 - 1e-3
    check_open_unit(beta_start, "beta_start")
    check_open_unit(anneal_fraction, "anneal_fraction", closed_right=True)
    if num_steps < 1 or num_levels < 1:
        raise ValueError(f"num_steps and num_levels must be >= 1, got {num_steps}, {num_levels}")
    levels = np.linspace(beta_start, beta, num_levels + 1)[1:] if num_levels > 1 else np.array([beta])
    r = jnp.asarray(rewards)
    w = None if weights is None else jnp.asarray(weights, r.dtype)
    solve = jax.jit(jax.vmap(lambda b, r, w: solve_threshold(r, b, alpha, side, w), in_axes=(0, None, None)))
    t_levels = np.asarray(solve(jnp.asarray(levels, r.dtype), r, w))
    ramp = max(int(round(anneal_fraction * num_steps)), 1)
    stair = np.minimum((np.arange(num_steps) * num_levels) // ramp, num_levels - 1)
    return levels[stair].astype(np.asarray(r).dtype), t_levels[stair]


def tfft(
    velocity_fn: Callable[[Any, Array, Array], Array],
    base_velocity_fn: Callable[[Array, Array], Array],
    reward_fn: Callable[[Array], Array],
    optimizer: optax.GradientTransformation,
    dim: int,
    *,
    beta: float,
    alpha: float,
    side: str = "right",
    t_star: Float[ArrayLike, ""] | None = None,
    **adjoint_kwargs: Any,
) -> AdjointMatching:
    """Stage 2 kernel: adjoint matching on the pseudo-reward with lambda = 1 / alpha.

    With ``t_star`` given the pseudo-reward is fixed and ``step(state, key)`` needs nothing
    else. With ``t_star=None`` the kernel reads ``(beta_i, t_i)`` from ``reward_params`` each
    step (see :func:`beta_annealing`), and ``beta`` only serves the checks.
    """
    _check_tfft(beta, alpha, side)
    if t_star is not None:
        reward = lambda x, _: pseudo_reward(reward_fn(x), t_star, beta, side)
        example = None
    else:
        reward = lambda x, bt: pseudo_reward(reward_fn(x), bt[1], bt[0], side)
        example = (jnp.asarray(beta), jnp.asarray(0.0))
    return adjoint_matching(
        velocity_fn, base_velocity_fn, reward, optimizer, dim, reward_scale=1.0 / alpha,
        example_reward_params=example, **adjoint_kwargs,
    )


class TFFTResult(NamedTuple):
    params: Any
    t_star: Array
    threshold: TFFTThreshold
    fit: FitResult


def tfft_fine_tune(
    key: Array,
    velocity_fn: Callable[[Any, Array, Array], Array],
    base_params: Any,
    reward_fn: Callable[[Array], Array],
    dim: int,
    *,
    beta: float,
    alpha: float = 1.0,
    side: str = "right",
    num_steps: int = 1000,
    num_offline: int = 10_000,
    optimizer: optax.GradientTransformation | None = None,
    anneal_beta: bool = False,
    anneal_fraction: float = 0.5,
    grid_steps: int = 40,
    progress: bool = True,
    checkpoint_path: str | None = None,
    **adjoint_kwargs: Any,
) -> TFFTResult:
    """TFFT Algorithm 1 end to end for a field ``velocity_fn(params, x, t)`` at ``base_params``.

    Stage 1 samples the pre-trained model with the memoryless SDE on the fine-tune's grid
    (``grid_steps`` uniform steps, or ``ts``); Stage 2 fine-tunes a copy of ``base_params`` for
    ``num_steps`` optimizer steps (Adam 1e-4 by default). ``adjoint_kwargs`` go to
    :func:`~tailjax.flows.adjoint.adjoint_matching`.
    """
    _check_tfft(beta, alpha, side)
    optimizer = optimizer or optax.adam(1e-4)
    sde_kwargs = {k: adjoint_kwargs[k] for k in ("ts", "schedule") if k in adjoint_kwargs}
    sde_kwargs["num_steps"] = grid_steps
    key_offline, key_tune = jax.random.split(key)
    sample_fn = jax.jit(lambda k, n: memoryless_sample(k, velocity_fn, base_params, n, dim, **sde_kwargs),
                        static_argnums=1)
    threshold = tfft_threshold(
        key_offline, sample_fn, reward_fn, beta=beta, alpha=alpha, side=side, num_samples=num_offline
    )
    base = lambda x, t: velocity_fn(base_params, x, t)
    if anneal_beta:
        betas, t_stars = beta_annealing(
            threshold.rewards, beta, alpha, side, num_steps, anneal_fraction=anneal_fraction,
            weights=threshold.weights,
        )
        kernel = tfft(velocity_fn, base, reward_fn, optimizer, dim, beta=beta, alpha=alpha,
                      side=side, num_steps=grid_steps, **adjoint_kwargs)
        params_fn = lambda i: (betas[i], t_stars[i])
    else:
        kernel = tfft(velocity_fn, base, reward_fn, optimizer, dim, beta=beta, alpha=alpha,
                      side=side, t_star=threshold.t_star, num_steps=grid_steps, **adjoint_kwargs)
        params_fn = None
    result = fine_tune(
        key_tune, kernel, base_params, num_steps, reward_params_fn=params_fn, progress=progress,
        checkpoint_path=checkpoint_path, description=f"TFFT ({side}, beta={beta})",
    )
    return TFFTResult(result.state.params, threshold.t_star, threshold, result)

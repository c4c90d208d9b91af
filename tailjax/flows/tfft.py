"""TFFT (Algorithm 1 of "Efficient Tail-Aware Generative Optimization via Flow Model
Fine-Tuning"): CVaR fine-tuning in two stages.

Names (as in :mod:`tailjax.risk.threshold`): ``quantile_level`` is the paper's beta,
``temperature`` its alpha > 0 (the KL temperature), ``side="upper"`` maximises the paper's
right-CVaR_beta (mean of the top 1 - beta of rewards, ``tail_prob`` = 1 - beta) and
``side="lower"`` its left-CVaR_beta (mean of the bottom beta, ``tail_prob`` = beta).

Stage 1 draws N offline samples from the pre-trained model, scores them and solves the 1-D
dual problem t* = argmin F_R (upper) or argmax F_L (lower) with
:func:`tailjax.risk.solve_threshold`. Stage 2 runs one adjoint-matching fine-tune on the
pseudo-reward r* = [r - t*]_+ / (1 - beta) (upper) or -[t* - r]_+ / beta (lower); the target is
p* proportional to p_pre exp(r* / alpha), and t* is the beta-quantile of p* (Theorems 4.1-4.2).

Quantile-level annealing (the paper's molecule setting) raises beta from near 0 to its target
over the first part of the fine-tune, re-solving t*(beta) on the same offline rewards; at
beta -> 0 the upper pseudo-reward is r - min r, i.e. EXP-FT, so the run starts from the plain
tilt. :func:`tfft_fine_tune` runs the whole algorithm, optionally with an importance-sampled
Stage 1 (:mod:`tailjax.flows.stage1`) and an importance-weighted refinement.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import check_open_unit, check_positive
from tailjax.base import Kernel
from tailjax.flows.adjoint import adjoint_matching
from tailjax.flows.finetune import exp_ft, fit_adjoint_matching
from tailjax.flows.girsanov import memoryless_sample_and_log_weight
from tailjax.flows.sde import memoryless_sample
from tailjax.flows.stage1 import TFFTThreshold, check_tfft, tfft_stratified_threshold, tfft_threshold
from tailjax.risk.threshold import pseudo_reward, solve_threshold, tail_prob_of_quantile_level
from tailjax.training import FitResult

__all__ = [
    "tfft_reward",
    "quantile_level_annealing",
    "tfft",
    "TFFTResult",
    "tfft_fine_tune",
]


def tfft_reward(
    reward_fn: Callable[[Array], Array], t_star: Float[ArrayLike, ""], quantile_level: float, side: str
) -> Callable[[Array], Array]:
    """The per-sample pseudo-reward x -> r*(x) at threshold ``t_star`` (``quantile_level``: beta)."""
    check_open_unit(quantile_level, "quantile_level")
    return lambda x: pseudo_reward(reward_fn(x), t_star, quantile_level, side)


def quantile_level_annealing(
    rewards: Float[ArrayLike, " n"],
    quantile_level: float,
    temperature: float,
    side: str,
    num_steps: int,
    *,
    anneal_fraction: float = 0.5,
    start_level: float | None = None,
    num_levels: int = 32,
    weights: Float[ArrayLike, " n"] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-step (beta_i, t*(beta_i)) for a fine-tune of ``num_steps`` steps, as numpy arrays ``(num_steps,)``.

    beta (``quantile_level``) moves linearly from ``start_level`` to ``quantile_level`` over
    the first ``anneal_fraction`` of the steps (in ``num_levels`` equal stairs, each with its
    t* solved on the offline ``rewards: (n,)``, with optional importance ``weights: (n,)``),
    then stays at ``quantile_level``. The default start is the EXP-FT end of each side: 0.001
    for the upper tail (right-CVaR_0 is the mean) and 0.999 for the lower tail.
    """
    check_tfft(quantile_level, temperature, side)
    if start_level is None:
        start_level = 1e-3 if side == "upper" else 1.0 - 1e-3
    check_open_unit(start_level, "start_level")
    check_open_unit(anneal_fraction, "anneal_fraction", closed_right=True)
    if num_steps < 1 or num_levels < 1:
        raise ValueError(f"num_steps and num_levels must be >= 1, got {num_steps}, {num_levels}")
    levels = (np.linspace(start_level, quantile_level, num_levels + 1)[1:] if num_levels > 1
              else np.array([quantile_level]))
    r = jnp.asarray(rewards)
    w = None if weights is None else jnp.asarray(weights, r.dtype)
    solve = jax.jit(jax.vmap(lambda b, r, w: solve_threshold(r, b, temperature, side, w), in_axes=(0, None, None)))
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
    quantile_level: float,
    temperature: float,
    side: str = "upper",
    t_star: Float[ArrayLike, ""] | None = None,
    **adjoint_kwargs: Any,
) -> Kernel:
    """Stage 2 kernel: adjoint matching on the pseudo-reward at ``temperature`` (the paper's alpha).

    With ``t_star`` given the pseudo-reward is fixed and ``step(state, key)`` needs nothing
    else. With ``t_star=None`` the kernel reads ``(beta_i, t_i)`` from its batch (the
    ``reward_params``) each step (see :func:`quantile_level_annealing`), and
    ``quantile_level`` only serves the checks. ``adjoint_kwargs`` go to
    :func:`~tailjax.flows.adjoint.adjoint_matching`.
    """
    check_tfft(quantile_level, temperature, side)
    if t_star is not None:
        reward = lambda x, _: pseudo_reward(reward_fn(x), t_star, quantile_level, side)
        example = None
    else:
        reward = lambda x, bt: pseudo_reward(reward_fn(x), bt[1], bt[0], side)
        example = (jnp.asarray(quantile_level), jnp.asarray(0.0))
    return adjoint_matching(
        velocity_fn, base_velocity_fn, reward, optimizer, dim, temperature=temperature,
        example_reward_params=example, **adjoint_kwargs,
    )


class TFFTResult(NamedTuple):
    params: Any  # the fine-tuned parameters (after the refinement, if any)
    t_star: Array  # the threshold of the fixed pseudo-reward (importance-sampled with a proposal)
    threshold: TFFTThreshold  # Stage 1 on pre-trained samples
    fit: FitResult  # Stage 2 (its state.params are the parameters before any refinement)
    proposal: FitResult | None = None  # the EXP-FT tail proposal, with proposal_steps > 0
    importance_threshold: TFFTThreshold | None = None  # the stratified Stage 1, with a proposal
    refinement: FitResult | None = None  # importance-weighted steps, with refine_steps > 0


def _phase_path(checkpoint_dir, name):
    return None if checkpoint_dir is None else pathlib.Path(checkpoint_dir) / f"{name}.ckpt"


def tfft_fine_tune(
    key: Array,
    velocity_fn: Callable[[Any, Array, Array], Array],
    base_params: Any,
    reward_fn: Callable[[Array], Array],
    dim: int,
    *,
    quantile_level: float,
    temperature: float = 1.0,
    side: str = "upper",
    num_steps: int = 1000,
    num_offline: int = 10_000,
    optimizer: optax.GradientTransformation | None = None,
    anneal_quantile_level: bool = False,
    anneal_fraction: float = 0.5,
    proposal_steps: int = 0,
    stratify_level: float = 0.99,
    refine_steps: int = 0,
    base_velocity_fn: Callable[[Array, Array], Array] | None = None,
    grid_steps: int = 40,
    progress: bool = True,
    checkpoint_dir: str | os.PathLike | None = None,
    **adjoint_kwargs: Any,
) -> TFFTResult:
    """TFFT Algorithm 1 end to end for a field ``velocity_fn(params, x, t)`` at ``base_params``.

    Stage 1 samples ``num_offline`` points of the pre-trained model with the memoryless SDE
    on the fine-tune's grid (``grid_steps`` uniform steps, or ``ts``) and solves for t*.
    Stage 2 fine-tunes a copy of ``base_params`` for ``num_steps`` optimizer steps (Adam 1e-4
    by default) at t*, or, with ``anneal_quantile_level``, along
    :func:`quantile_level_annealing` solved on the Stage 1 sample. Options for a target whose
    tail the pre-trained samples never reach:

    * ``proposal_steps > 0``: first fine-tune an EXP-FT proposal at temperature
      ``temperature * tail_prob`` (the slope of the pseudo-reward on its tail; ``tail_prob`` =
      1 - beta upper, beta lower) for that many steps, then re-solve t* on the stratified
      importance sample of :func:`~tailjax.flows.stage1.tfft_stratified_threshold` (pre-trained
      samples below their ``stratify_level`` quantile, proposal samples above it, with path
      weights). That t* is the one the fixed pseudo-reward uses (an annealed Stage 2 still
      follows the thresholds of the pre-trained sample).
    * ``refine_steps > 0``: then run that many importance-weighted adjoint-matching steps
      (``importance_weighting=True``), warm-started from Stage 2, at the fixed t*.

    ``base_velocity_fn`` is the frozen base field (default ``velocity_fn(base_params, ., .)``;
    pass it when the fine-tuned field is a residual on a known base). ``adjoint_kwargs`` go to
    :func:`~tailjax.flows.adjoint.adjoint_matching` in every phase. ``checkpoint_dir`` holds
    one checkpoint per phase (``proposal.ckpt``, ``stage2.ckpt``, ``refine.ckpt``); a rerun
    with the same arguments resumes where it stopped.
    """
    check_tfft(quantile_level, temperature, side)
    check_open_unit(stratify_level, "stratify_level")
    if num_steps < 1 or proposal_steps < 0 or refine_steps < 0:
        raise ValueError(f"num_steps must be >= 1 and proposal_steps, refine_steps >= 0, got "
                         f"{num_steps}, {proposal_steps}, {refine_steps}")
    optimizer = optimizer or optax.adam(1e-4)
    sde_kwargs = {k: adjoint_kwargs[k] for k in ("ts", "schedule") if k in adjoint_kwargs}
    sde_kwargs["num_steps"] = grid_steps
    key_offline, key_tune = jax.random.split(key)
    base = base_velocity_fn or (lambda x, t: velocity_fn(base_params, x, t))
    base_field = lambda _, x, t: base(x, t)
    sample_fn = jax.jit(lambda k, n: memoryless_sample(k, base_field, None, n, dim, **sde_kwargs),
                        static_argnums=1)
    levels = dict(quantile_level=quantile_level, temperature=temperature, side=side)
    threshold = tfft_threshold(key_offline, sample_fn, reward_fn, num_samples=num_offline, **levels)
    config = {"method": "tfft", **levels, "num_offline": num_offline, "grid_steps": grid_steps,
              "adjoint": adjoint_kwargs}

    proposal = is_threshold = refinement = None
    t_star = threshold.t_star
    if proposal_steps:
        key_prop, key_is, key_refine = jax.random.split(jax.random.fold_in(key, 1), 3)
        tail_prob = tail_prob_of_quantile_level(quantile_level, side)
        prop_kernel = exp_ft(velocity_fn, base, reward_fn, optimizer, dim, temperature=temperature * tail_prob,
                             num_steps=grid_steps, **adjoint_kwargs)
        proposal = fit_adjoint_matching(
            key_prop, prop_kernel, base_params, num_steps=proposal_steps,
            checkpoint_path=_phase_path(checkpoint_dir, "proposal"), config={**config, "phase": "proposal"},
            progress=progress, description="TFFT proposal",
        )
        proposal_fn = jax.jit(lambda k, n: memoryless_sample_and_log_weight(
            k, velocity_fn, proposal.state.params, base, n, dim, **sde_kwargs), static_argnums=1)
        is_threshold = tfft_stratified_threshold(
            key_is, sample_fn, proposal_fn, reward_fn, num_samples=num_offline, stratify_level=stratify_level,
            **levels,
        )
        t_star = is_threshold.t_star
    else:
        key_refine = jax.random.fold_in(key, 1)

    if anneal_quantile_level:
        betas, t_stars = quantile_level_annealing(
            threshold.rewards, quantile_level, temperature, side, num_steps,
            anneal_fraction=anneal_fraction, weights=threshold.weights,
        )
        kernel = tfft(velocity_fn, base, reward_fn, optimizer, dim, num_steps=grid_steps, **levels,
                      **adjoint_kwargs)
        reward_params = lambda i: (betas[i], t_stars[i])
        stage_config = {**config, "phase": "stage2", "annealed": True, "anneal_fraction": anneal_fraction}
    else:
        kernel = tfft(velocity_fn, base, reward_fn, optimizer, dim, t_star=t_star, num_steps=grid_steps,
                      **levels, **adjoint_kwargs)
        reward_params = None
        stage_config = {**config, "phase": "stage2", "t_star": float(t_star)}
    result = fit_adjoint_matching(
        key_tune, kernel, base_params, num_steps=num_steps, reward_params=reward_params,
        checkpoint_path=_phase_path(checkpoint_dir, "stage2"), config=stage_config, progress=progress,
        description=f"TFFT ({side}, beta={quantile_level})",
    )
    params = result.state.params
    if refine_steps:
        weighted = tfft(velocity_fn, base, reward_fn, optimizer, dim, t_star=t_star, num_steps=grid_steps,
                        **levels, **{**adjoint_kwargs, "importance_weighting": True})
        refinement = fit_adjoint_matching(
            key_refine, weighted, params, num_steps=refine_steps,
            checkpoint_path=_phase_path(checkpoint_dir, "refine"), progress=progress,
            config={**config, "phase": "refine", "t_star": float(t_star)}, description="TFFT refinement",
        )
        params = refinement.state.params
    return TFFTResult(params, t_star, threshold, result, proposal, is_threshold, refinement)

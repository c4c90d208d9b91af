"""EXP-FT (entropy-regularised reward fine-tuning) and the fit helper shared by all fine-tuners.

EXP-FT solves max_p E_p[r] - alpha KL(p || p_pre), whose solution is
p*(x) proportional to p_pre(x) exp(r(x) / alpha): adjoint matching at ``temperature`` alpha.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import check_positive
from tailjax.base import Kernel
from tailjax.flows.adjoint import adjoint_matching
from tailjax.training import FitResult, fit

__all__ = ["exp_ft", "fit_adjoint_matching", "check_reward_values"]


def check_reward_values(
    reward_fn: Callable[..., Array], samples: Float[ArrayLike, "n *event"], name: str = "reward_fn",
    context: Any = None,
) -> Float[Array, " n"]:
    """Evaluate a per-sample reward on ``samples: (n, *event)`` (``reward_fn(x)``, or
    ``reward_fn(x, c)`` with a per-sample ``context``); raise ``ValueError`` if any is not finite.

    Returns the rewards ``(n,)``. Use it on concrete arrays (outside ``jit``).
    """
    samples = jnp.asarray(samples)
    if samples.ndim < 2:
        raise ValueError(f"samples must have shape (n, *event), e.g. (n, d), got {samples.shape}")
    if context is None:
        rewards = jax.jit(jax.vmap(reward_fn))(samples)
    else:
        rewards = jax.jit(jax.vmap(reward_fn))(samples, context)
    if rewards.shape != samples.shape[:1]:
        raise ValueError(f"{name} must return a scalar per sample, got shape {rewards.shape[1:]}")
    bad = int(np.sum(~np.isfinite(np.asarray(rewards))))
    if bad:
        raise ValueError(f"{name} returned non-finite values (NaN or inf) on {bad} of {rewards.shape[0]} samples")
    return rewards


def exp_ft(
    velocity_fn: Callable[..., Array],
    base_velocity_fn: Callable[..., Array],
    reward_fn: Callable[..., Array],
    optimizer: optax.GradientTransformation,
    dim: int | tuple[int, ...],
    *,
    temperature: float = 1.0,
    **adjoint_kwargs: Any,
) -> Kernel:
    """EXP-FT kernel: adjoint matching on ``reward_fn(x) -> ()`` at ``temperature`` (the paper's alpha).

    With ``contexts`` (an ``adjoint_kwargs`` entry) the reward is ``reward_fn(x, c)``.
    ``adjoint_kwargs`` go to :func:`~tailjax.flows.adjoint.adjoint_matching` (batch_size,
    num_steps, loss_timesteps, loss_clip, importance_weighting, contexts, mesh, remat,
    compute_dtype, ...).
    """
    check_positive(temperature, "temperature")
    if adjoint_kwargs.get("contexts") is None:
        reward = lambda x, _: reward_fn(x)
    else:
        reward = lambda x, _, c: reward_fn(x, c)
    return adjoint_matching(
        velocity_fn, base_velocity_fn, reward, optimizer, dim, temperature=temperature, **adjoint_kwargs,
    )


def fit_adjoint_matching(
    key: Array,
    kernel: Kernel,
    params: Any,
    *,
    num_steps: int,
    reward_params: Callable[[int], Any] | Any = None,
    eval_fn: Callable[[Any], Any] | None = None,
    eval_every: int | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: int = 200,
    config: Any = None,
    progress: bool = True,
    jit: bool = True,
    description: str = "adjoint matching",
) -> FitResult:
    """Run an adjoint-matching kernel (:func:`~tailjax.flows.adjoint.adjoint_matching`,
    :func:`exp_ft`, :func:`~tailjax.flows.tfft.tfft`) for ``num_steps`` with
    :func:`tailjax.training.fit`, from ``params`` (usually a copy of the base parameters).

    ``reward_params`` is step ``i``'s reward parameters: a function ``i -> reward_params``
    (annealing schedules), a fixed pytree, or None. ``eval_fn(params)`` is evaluated every
    ``eval_every`` steps. ``config`` (plain values describing the run) goes into the
    checkpoint header, so a resume from ``checkpoint_path`` refuses another run's file. Pass
    ``jit=False`` for a kernel built with ``checked=True``. The result's ``state.params`` are
    the fine-tuned parameters; ``history`` holds the per-step
    :class:`~tailjax.flows.adjoint.AdjointMatchingInfo`.
    """
    return fit(
        kernel,
        kernel.init(params),
        key,
        num_steps,
        batches=reward_params,
        eval_fn=(lambda s: eval_fn(s.params)) if eval_fn is not None else None,
        eval_every=eval_every,
        checkpoint_path=checkpoint_path,
        checkpoint_every=checkpoint_every,
        config=config,
        progress=progress,
        jit=jit,
        description=description,
    )

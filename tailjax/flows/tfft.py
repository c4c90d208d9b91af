"""TFFT (Algorithm 1 of "Efficient Tail-Aware Generative Optimization via Flow Model
Fine-Tuning"): CVaR fine-tuning in two stages. This module: the pseudo-reward, the Stage 2
kernel and quantile-level annealing; :mod:`tailjax.flows.stage1` has Stage 1 and
:mod:`tailjax.flows.tfft_fine_tune` the whole algorithm.

Names (as in :mod:`tailjax.risk.threshold`): ``quantile_level`` is the paper's beta,
``temperature`` its alpha > 0 (the KL temperature), ``side="upper"`` maximises the paper's
right-CVaR_beta (mean of the top 1 - beta of rewards, ``tail_prob`` = 1 - beta) and
``side="lower"`` its left-CVaR_beta (mean of the bottom beta, ``tail_prob`` = beta).

Stage 1 draws N offline samples from the pre-trained model, scores them and solves the 1-D
dual problem t* = argmin F_R (upper) or argmax F_L (lower) with
:func:`tailjax.risk.solve_threshold`. Stage 2 runs one adjoint-matching fine-tune on the
pseudo-reward r* = [r - t*]_+ / (1 - beta) (upper) or -[t* - r]_+ / beta (lower); the target is
p* proportional to p_pre exp(r* / alpha), and t* is the beta-quantile of p* (Theorems 4.1-4.2).
By Stein's identity every such tilt of a Gaussian reward r ~ N(m, s^2) has
E*[r] = m + s^2 E*[dr*/dr] / alpha = m + s^2 / alpha (EXP-FT, L-TFFT and R-TFFT alike).

Quantile-level annealing (the paper's molecule setting) raises beta from near 0 to its target
over the first part of the fine-tune, re-solving t*(beta) on the same offline rewards; at
beta -> 0 the upper pseudo-reward is r - min r, i.e. EXP-FT, so the run starts from the plain
tilt.

Contexts: with per-sample contexts the reward is ``reward_fn(x, c)``. The threshold is one
number for all contexts (pooled) or one per context: pass ``t_star`` of shape ``(m,)`` with
``contexts`` an array of the m contexts (row j has threshold t_star[j]).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import check_open_unit, check_weights
from tailjax.base import Kernel
from tailjax.flows.adjoint import adjoint_matching
from tailjax.flows.stage1 import check_tfft
from tailjax.risk.threshold import pseudo_reward, solve_threshold

__all__ = ["tfft_reward", "quantile_level_annealing", "tfft", "indexed_contexts"]


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

    Raises ``ValueError`` naming ``weights`` for weights that are negative, not finite, all
    zero or of the wrong shape (they are checked here, before the compiled solve).
    """
    check_tfft(quantile_level, temperature, side)
    if start_level is None:
        start_level = 1e-3 if side == "upper" else 1.0 - 1e-3
    check_open_unit(start_level, "start_level")
    check_open_unit(anneal_fraction, "anneal_fraction", closed_right=True)
    if num_steps < 1 or num_levels < 1:
        raise ValueError(f"num_steps and num_levels must be >= 1, got {num_steps}, {num_levels}")
    r = jnp.asarray(rewards)
    if r.ndim != 1 or r.shape[0] < 1:
        raise ValueError(f"rewards must be a non-empty 1-D array, got shape {r.shape}")
    if bool(jnp.any(jnp.isnan(r))):
        raise ValueError("rewards contain NaN")
    if weights is not None:
        if jnp.shape(weights) != r.shape:
            raise ValueError(f"weights must have the shape of rewards {r.shape}, got {jnp.shape(weights)}")
        check_weights(weights, r)
    levels = (np.linspace(start_level, quantile_level, num_levels + 1)[1:] if num_levels > 1
              else np.array([quantile_level]))
    w = None if weights is None else jnp.asarray(weights, r.dtype)
    solve = jax.jit(jax.vmap(lambda b, r, w: solve_threshold(r, b, temperature, side, w), in_axes=(0, None, None)))
    t_levels = np.asarray(solve(jnp.asarray(levels, r.dtype), r, w))
    ramp = max(int(round(anneal_fraction * num_steps)), 1)
    stair = np.minimum((np.arange(num_steps) * num_levels) // ramp, num_levels - 1)
    return levels[stair].astype(np.asarray(r).dtype), t_levels[stair]


def indexed_contexts(contexts: Any) -> Any:
    """Contexts tagged with their row index: ``(arange(m), contexts)`` for an array (pytree) of
    m contexts, ``(key, n) -> (zeros(n), contexts(key, n))`` for a context sampler."""
    if contexts is None:
        return None
    if callable(contexts):
        return lambda key, n: (jnp.zeros((n,), jnp.int32), contexts(key, n))
    m = jax.tree_util.tree_leaves(contexts)[0].shape[0]
    return (jnp.arange(m, dtype=jnp.int32), contexts)


def _pick(t, index):
    """The threshold of a context: ``t`` scalar (pooled) or ``(m,)`` (per context)."""
    t = jnp.asarray(t)
    return t if t.ndim == 0 else t[index]


def tfft(
    velocity_fn: Callable[..., Array],
    base_velocity_fn: Callable[..., Array],
    reward_fn: Callable[..., Array],
    optimizer: optax.GradientTransformation,
    dim: int | tuple[int, ...],
    *,
    quantile_level: float,
    temperature: float,
    side: str = "upper",
    t_star: Float[ArrayLike, "*m"] | None = None,
    **adjoint_kwargs: Any,
) -> Kernel:
    """Stage 2 kernel: adjoint matching on the pseudo-reward at ``temperature`` (the paper's alpha).

    With ``t_star`` given the pseudo-reward is fixed and ``step(state, key)`` needs nothing
    else. With ``t_star=None`` the kernel reads ``(beta_i, t_i)`` from its batch (the
    ``reward_params``) each step (see :func:`quantile_level_annealing`), and
    ``quantile_level`` only serves the checks. ``adjoint_kwargs`` go to
    :func:`~tailjax.flows.adjoint.adjoint_matching` (``contexts``, ``batch_size``, ...).

    With ``contexts`` the fields take the context last and the reward is ``reward_fn(x, c)``;
    a ``t_star`` (or an annealed ``t_i``) of shape ``(m,)`` gives context row j the threshold
    ``t_star[j]`` (``contexts`` must then be an array of m rows).
    """
    check_tfft(quantile_level, temperature, side)
    contexts = adjoint_kwargs.pop("contexts", None)
    if contexts is None:
        if t_star is not None:
            reward = lambda x, _: pseudo_reward(reward_fn(x), t_star, quantile_level, side)
        else:
            reward = lambda x, bt: pseudo_reward(reward_fn(x), bt[1], bt[0], side)
        fields, tagged = (velocity_fn, base_velocity_fn), None
    else:
        if t_star is not None and jnp.ndim(t_star) == 1:
            if callable(contexts) or jax.tree_util.tree_leaves(contexts)[0].shape[0] != jnp.shape(t_star)[0]:
                raise ValueError("a t_star of shape (m,) needs contexts given as an array of m rows")
        if t_star is not None:
            reward = lambda x, _, c: pseudo_reward(reward_fn(x, c[1]), _pick(t_star, c[0]), quantile_level, side)
        else:
            reward = lambda x, bt, c: pseudo_reward(reward_fn(x, c[1]), _pick(bt[1], c[0]), bt[0], side)
        fields = (lambda p, x, t, c: velocity_fn(p, x, t, c[1]), lambda x, t, c: base_velocity_fn(x, t, c[1]))
        tagged = indexed_contexts(contexts)
        if adjoint_kwargs.get("behaviour_fields") is not None:
            adjoint_kwargs["behaviour_fields"] = [
                None if f is None else (lambda x, t, c, f=f: f(x, t, c[1])) for f in adjoint_kwargs["behaviour_fields"]
            ]
    example = None if t_star is not None else (jnp.asarray(quantile_level), jnp.zeros(()))
    example = adjoint_kwargs.pop("example_reward_params", example)
    return adjoint_matching(
        fields[0], fields[1], reward, optimizer, dim, temperature=temperature, contexts=tagged,
        example_reward_params=example, **adjoint_kwargs,
    )

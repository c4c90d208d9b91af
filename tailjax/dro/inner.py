"""GAS-DRO's inner maximisation: the Lagrangian max_theta E_{P_theta} f(w, x) - mu J(theta, P_0)
(eq. (8)) by policy optimisation over the generator's parameters, and dual ascent on mu.

One inner step (``InnerMax`` of Algorithm 1, k -> k + 1):

1. draw n trajectories from theta_old = theta_k and score them, r_i = f(w, x_i);
2. ``epochs`` optimiser steps (Adam in the paper) on :func:`lagrangian_loss`, the negative
   of the PPO surrogate (eq. (10)) E[min(rho A, clip(rho, 1 - kappa, 1 + kappa) A)] -
   mu J(theta, P_0), where rho = P_theta(x_{0:T'}) / P_theta_old(x_{0:T'}) is the
   likelihood ratio over the last T' reverse steps and A the (optionally standardised)
   losses; or of the REINFORCE form of eq. (9), E[A log P_theta(x_{0:T'})] - mu J, as an
   option. The epochs are a :func:`tailjax.training.gradient_kernel`'s steps under
   ``lax.scan``;
3. mu <- max{0, mu + eta (J(theta_{k+1}, P_0) - epsilon)}.

:func:`inner_max_kernel` is this step as a :class:`~tailjax.base.Kernel`, with the
multiplier mu as its extra state.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float

from tailjax import training
from tailjax._checks import check_open_unit, check_positive
from tailjax.base import Kernel
from tailjax.dro.ambiguity import AmbiguitySet

__all__ = [
    "ppo_ratio",
    "ppo_surrogate",
    "reinforce_surrogate",
    "standardize",
    "dual_update",
    "PolicyBatch",
    "lagrangian_loss",
    "InnerBatch",
    "InnerState",
    "InnerInfo",
    "inner_max_kernel",
]


def ppo_ratio(log_prob: Array, log_prob_old: Array) -> Array:
    """rho = exp(log P_theta - log P_theta_old), elementwise."""
    return jnp.exp(log_prob - log_prob_old)


def ppo_surrogate(
    log_prob: Float[Array, " n"],
    log_prob_old: Float[Array, " n"],
    advantages: Float[Array, " n"],
    clip: float = 0.4,
) -> Float[Array, ""]:
    """Clipped PPO objective mean_i min(rho_i A_i, clip(rho_i, 1 - clip, 1 + clip) A_i).

    To be maximised. ``log_prob_old`` and ``advantages`` are treated as constants.
    """
    check_open_unit(clip, "clip")
    rho = ppo_ratio(log_prob, jax.lax.stop_gradient(log_prob_old))
    a = jax.lax.stop_gradient(advantages)
    return jnp.mean(jnp.minimum(rho * a, jnp.clip(rho, 1.0 - clip, 1.0 + clip) * a))


def reinforce_surrogate(
    log_prob: Float[Array, " n"], advantages: Float[Array, " n"]
) -> Float[Array, ""]:
    """mean_i A_i log P_theta(x_i): its gradient is the score-function (REINFORCE) estimate."""
    return jnp.mean(jax.lax.stop_gradient(advantages) * log_prob)


def standardize(values: Float[Array, " n"], eps: float = 1e-8) -> Float[Array, " n"]:
    """(values - mean) / (std + eps): a baseline and a scale for the policy gradient."""
    return (values - jnp.mean(values)) / (jnp.std(values) + eps)


def dual_update(mu: Array, constraint: Array, budget: float, lr: float) -> Array:
    """mu <- max{0, mu + lr (constraint - budget)}: projected dual ascent on J <= budget."""
    return jnp.maximum(0.0, mu + lr * (constraint - budget))


class PolicyBatch(NamedTuple):
    """What one policy epoch needs: scored trajectories of theta_old and the multiplier."""

    trajectories: Any  # what ``ambiguity_set.log_prob`` scores, n of them
    log_prob_old: Array  # (n,) log P_theta_old of the trajectories
    advantages: Array  # (n,) what multiplies the likelihood ratio
    mu: Array  # Lagrange multiplier of J(theta, P_0) <= epsilon
    data: Any  # nominal batch for J


def lagrangian_loss(
    theta: Any,
    batch: PolicyBatch,
    key: jax.Array,
    *,
    ambiguity_set: AmbiguitySet,
    clip: float = 0.4,
    estimator: str = "ppo",
) -> tuple[Array, dict]:
    """The negative Lagrangian -surrogate(theta) + mu J(theta, P_0), minimised over the
    generator's parameters theta: ``(value, {"reconstruction": J})``.

    The surrogate is :func:`ppo_surrogate` (``estimator="ppo"``, clip = the paper's kappa)
    or :func:`reinforce_surrogate` (``"reinforce"``); ``key`` draws J's Monte-Carlo terms.
    """
    if estimator not in ("ppo", "reinforce"):
        raise ValueError(f"estimator must be 'ppo' or 'reinforce', got {estimator!r}")
    logp = ambiguity_set.log_prob(theta, batch.trajectories)
    if estimator == "ppo":
        surrogate = ppo_surrogate(logp, batch.log_prob_old, batch.advantages, clip)
    else:
        surrogate = reinforce_surrogate(logp, batch.advantages)
    j_value = ambiguity_set.reconstruction_loss(theta, batch.data, key)
    return -surrogate + batch.mu * j_value, {"reconstruction": j_value}


class InnerBatch(NamedTuple):
    """The input of one inner step: the predictor to attack and a nominal batch for J."""

    predictor: Any  # w (held fixed)
    data: Any  # nominal batch in the generator's space: x, or (x, cond)


class InnerState(NamedTuple):
    generator: training.TrainState  # theta and its optimiser state
    mu: Array  # Lagrange multiplier of J(theta, P_0) <= epsilon


class InnerInfo(NamedTuple):
    objective: Array  # mean f(w, x) over the step's trajectories (under theta_old)
    reconstruction: Array  # J(theta_{k+1}, P_0) on the step's nominal batch
    mu: Array  # mu after the dual update
    clip_fraction: Array  # share of ratios outside [1 - kappa, 1 + kappa] after the epochs


def inner_max_kernel(
    ambiguity_set: AmbiguitySet,
    loss_fn: Callable[[Any, Any], Array],
    optimizer: optax.GradientTransformation,
    *,
    clip: float = 0.4,
    budget: float = 0.015,
    dual_lr: float = 0.01,
    num_samples: int = 64,
    epochs: int = 10,
    estimator: str = "ppo",
    advantages: str = "center",
) -> Kernel:
    """GAS-DRO's InnerMax step as a :class:`~tailjax.base.Kernel`.

    ``init(generator_params, mu=0.0) -> InnerState``;
    ``step(state, key, InnerBatch(w, data)) -> (InnerState, InnerInfo)``, pure and jittable.
    ``loss_fn(w, sample) -> scalar`` is the predictor's per-sample loss f; ``data`` a nominal
    batch for J (array, or ``(x, cond)`` for conditional generators). ``clip`` is kappa,
    ``budget`` epsilon, ``dual_lr`` eta, ``num_samples`` the trajectories per step.
    ``advantages`` is what multiplies the likelihood ratio: the losses themselves (``"raw"``,
    eq. (9)), the losses minus their batch mean (``"center"``: same expected gradient, less
    variance, and the Lagrangian keeps the scale of f so that mu stays comparable with the
    paper's eta), or standardised losses (``"standardize"``: scale-free, as in DDPO; mu then
    has to grow to the scale of a unit-variance reward).
    """
    check_open_unit(clip, "clip")
    check_positive(budget, "budget", allow_zero=True)
    check_positive(dual_lr, "dual_lr", allow_zero=True)
    if int(num_samples) < 2:
        raise ValueError(f"num_samples must be >= 2, got {num_samples}")
    if int(epochs) < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if estimator not in ("ppo", "reinforce"):
        raise ValueError(f"estimator must be 'ppo' or 'reinforce', got {estimator!r}")
    if advantages not in ("raw", "center", "standardize"):
        raise ValueError(f"advantages must be 'raw', 'center' or 'standardize', got {advantages!r}")
    policy = training.gradient_kernel(
        functools.partial(lagrangian_loss, ambiguity_set=ambiguity_set, clip=clip, estimator=estimator),
        optimizer,
    )

    def init(generator_params: Any, mu: Any = 0.0) -> InnerState:
        return InnerState(policy.init(generator_params), jnp.asarray(mu, jnp.float32))

    def step(state: InnerState, key: jax.Array, batch: InnerBatch) -> tuple[InnerState, InnerInfo]:
        w, data = batch
        theta_old = state.generator.params
        k_sample, k_epochs, k_j = jax.random.split(key, 3)
        samples, traj = ambiguity_set.sample(k_sample, theta_old, num_samples)
        losses = jax.vmap(loss_fn, in_axes=(None, 0))(jax.lax.stop_gradient(w), samples)
        if advantages == "standardize":
            adv = standardize(losses)
        elif advantages == "center":
            adv = losses - jnp.mean(losses)
        else:
            adv = losses
        logp_old = jax.lax.stop_gradient(ambiguity_set.log_prob(theta_old, traj))
        policy_batch = PolicyBatch(traj, logp_old, adv, state.mu, data)

        def epoch(generator, k):
            return policy.step(generator, k, policy_batch)[0], None

        keys = jax.random.split(k_epochs, epochs)
        generator, _ = jax.lax.scan(epoch, state.generator, keys)
        theta = generator.params
        j_value = ambiguity_set.reconstruction_loss(theta, data, k_j)
        mu = dual_update(state.mu, j_value, budget, dual_lr)
        rho = ppo_ratio(ambiguity_set.log_prob(theta, traj), logp_old)
        clipped = jnp.mean(((rho < 1.0 - clip) | (rho > 1.0 + clip)).astype(losses.dtype))
        info = InnerInfo(jnp.mean(losses), j_value, mu, clipped)
        return InnerState(generator, mu), info

    return Kernel(init, step)

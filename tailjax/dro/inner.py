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

The paper's reference is the pre-trained theta_0 (``reference="nominal"``: trajectories drawn
from theta_0, P_theta / P_theta0 as the ratio); ``"current"`` re-sets it to theta_k at each step.

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
from tailjax._checks import (
    check_int,
    check_nonempty_last_axis,
    check_open_unit,
    check_positive,
    nan_where,
    traced_below_zero,
)
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

    To be maximised. ``log_prob_old`` and ``advantages`` are treated as constants; the three
    arrays must share their shape and not be empty. A traced ``clip`` outside (0, 1) gives NaN.
    """
    check_open_unit(clip, "clip")
    shapes = {jnp.shape(log_prob), jnp.shape(log_prob_old), jnp.shape(advantages)}
    if len(shapes) != 1:
        raise ValueError(f"log_prob, log_prob_old and advantages must share their shape, got {sorted(shapes)}")
    check_nonempty_last_axis(advantages, "advantages")
    rho = ppo_ratio(log_prob, jax.lax.stop_gradient(log_prob_old))
    a = jax.lax.stop_gradient(advantages)
    value = jnp.mean(jnp.minimum(rho * a, jnp.clip(rho, 1.0 - clip, 1.0 + clip) * a))
    return jnp.where((clip > 0) & (clip < 1), value, jnp.nan)


def reinforce_surrogate(
    log_prob: Float[Array, " n"], advantages: Float[Array, " n"]
) -> Float[Array, ""]:
    """mean_i A_i log P_theta(x_i): its gradient is the score-function (REINFORCE) estimate.

    The two arrays must be non-empty and share their shape (``ValueError`` otherwise)."""
    check_nonempty_last_axis(log_prob, "log_prob")
    check_nonempty_last_axis(advantages, "advantages")
    if jnp.shape(log_prob) != jnp.shape(advantages):
        raise ValueError(f"log_prob and advantages must share their shape, got {jnp.shape(log_prob)} and "
                         f"{jnp.shape(advantages)}")
    return jnp.mean(jax.lax.stop_gradient(advantages) * log_prob)


def standardize(values: Float[Array, " n"], eps: float = 1e-8) -> Float[Array, " n"]:
    """(values - mean) / (std + eps): a baseline and a scale for the policy gradient.

    ``eps`` must be >= 0 (a traced negative one gives NaN)."""
    check_nonempty_last_axis(values, "values")
    check_positive(eps, "eps", allow_zero=True)
    out = (values - jnp.mean(values)) / (jnp.std(values) + eps)
    return nan_where(traced_below_zero(eps), out)


def dual_update(mu: Array, constraint: Array, budget: float, lr: float) -> Array:
    """mu <- max{0, mu + lr (constraint - budget)}: projected dual ascent on J <= budget.

    Concrete ``budget < 0`` or ``lr < 0`` raise ``ValueError``; traced ones give NaN."""
    check_positive(budget, "budget", allow_zero=True)
    check_positive(lr, "lr", allow_zero=True)
    value = jnp.maximum(0.0, mu + lr * (constraint - budget))
    return jnp.where((jnp.asarray(budget) >= 0) & (jnp.asarray(lr) >= 0), value, jnp.nan)


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
    """The input of one inner step: the predictor to attack, a nominal batch for J, and (for
    ``reference="nominal"``) the nominal generator theta_0 and, optionally, trajectories drawn
    from it once for the whole InnerMax."""

    predictor: Any  # w (held fixed)
    data: Any  # nominal batch in the generator's space: x, or (x, cond)
    reference: Any = None  # theta_0: the PPO reference and the path-KL's base
    draws: Any = None  # (samples, trajectories) drawn from theta_0, or None to draw here


class InnerState(NamedTuple):
    generator: training.TrainState  # theta and its optimiser state
    mu: Array  # Lagrange multiplier of J(theta, P_0) <= epsilon


class InnerInfo(NamedTuple):
    objective: Array  # estimate of E_{P_theta} f(w, x) (self-normalised IS under "nominal")
    reconstruction: Array  # J(theta_{k+1}, P_0) on the step's nominal batch
    mu: Array  # mu after the dual update
    clip_fraction: Array  # share of ratios outside [1 - kappa, 1 + kappa] after the epochs
    path_kl: Array  # E_theta log(P_theta / P_theta0) over the last T' steps (NaN without theta_0)


def _advantages(losses, kind):
    if kind == "standardize":
        return standardize(losses)
    if kind == "center":
        return losses - jnp.mean(losses)
    return losses


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
    reference: str = "nominal",
) -> Kernel:
    """GAS-DRO's InnerMax step as a :class:`~tailjax.base.Kernel`.

    ``init(generator_params, mu=0.0) -> InnerState``;
    ``step(state, key, InnerBatch(w, data, reference, draws)) -> (InnerState, InnerInfo)``,
    pure and jittable. ``loss_fn(w, sample) -> scalar`` is the predictor's per-sample loss f;
    ``data`` a nominal batch for J (array, or ``(x, cond)`` for conditional generators).
    ``clip`` is kappa, ``budget`` epsilon, ``dual_lr`` eta, ``num_samples`` the trajectories
    per step. ``reference`` is the policy ratio's denominator: ``"nominal"`` (the paper)
    P_theta / P_theta0 on trajectories drawn from the fixed pre-trained theta_0 =
    ``batch.reference`` (``batch.draws`` when given, so a caller draws them once per InnerMax;
    else drawn here), ``"current"`` P_theta / P_theta_k on trajectories redrawn from the
    current iterate at every step (on-policy PPO). ``advantages`` is what multiplies the
    likelihood ratio: the losses themselves (``"raw"``, eq. (9)), the losses minus their batch
    mean (``"center"``: same expected gradient, less variance, and the Lagrangian keeps the
    scale of f so that mu stays comparable with the paper's eta), or standardised losses
    (``"standardize"``: scale-free, as in DDPO; mu then has to grow to the scale of a
    unit-variance reward).
    """
    check_open_unit(clip, "clip")
    check_positive(budget, "budget", allow_zero=True)
    check_positive(dual_lr, "dual_lr", allow_zero=True)
    num_samples = check_int(num_samples, "num_samples", minimum=2)
    epochs = check_int(epochs, "epochs", minimum=1)
    if estimator not in ("ppo", "reinforce"):
        raise ValueError(f"estimator must be 'ppo' or 'reinforce', got {estimator!r}")
    if advantages not in ("raw", "center", "standardize"):
        raise ValueError(f"advantages must be 'raw', 'center' or 'standardize', got {advantages!r}")
    if reference not in ("nominal", "current"):
        raise ValueError(f"reference must be 'nominal' or 'current', got {reference!r}")
    policy = training.gradient_kernel(
        functools.partial(lagrangian_loss, ambiguity_set=ambiguity_set, clip=clip, estimator=estimator),
        optimizer,
    )

    def init(generator_params: Any, mu: Any = 0.0) -> InnerState:
        return InnerState(policy.init(generator_params), jnp.asarray(mu, jnp.float32))

    def step(state: InnerState, key: jax.Array, batch: InnerBatch) -> tuple[InnerState, InnerInfo]:
        w, data, theta_ref, draws = batch
        theta_k = state.generator.params
        k_sample, k_epochs, k_j = jax.random.split(key, 3)
        if reference == "nominal":
            if theta_ref is None:
                raise ValueError("reference='nominal' needs InnerBatch.reference (theta_0)")
            samples, traj = draws if draws is not None else ambiguity_set.sample(k_sample, theta_ref, num_samples)
            logp_old = jax.lax.stop_gradient(ambiguity_set.log_prob(theta_ref, traj))
        else:
            samples, traj = ambiguity_set.sample(k_sample, theta_k, num_samples)
            logp_old = jax.lax.stop_gradient(ambiguity_set.log_prob(theta_k, traj))
        losses = jax.vmap(loss_fn, in_axes=(None, 0))(jax.lax.stop_gradient(w), samples)
        policy_batch = PolicyBatch(traj, logp_old, _advantages(losses, advantages), state.mu, data)

        def epoch(generator, k):
            return policy.step(generator, k, policy_batch)[0], None

        generator, _ = jax.lax.scan(epoch, state.generator, jax.random.split(k_epochs, epochs))
        theta = generator.params
        j_value = ambiguity_set.reconstruction_loss(theta, data, k_j)
        mu = dual_update(state.mu, j_value, budget, dual_lr)
        log_rho = ambiguity_set.log_prob(theta, traj) - logp_old
        rho = jnp.exp(log_rho)
        clipped = jnp.mean(((rho < 1.0 - clip) | (rho > 1.0 + clip)).astype(losses.dtype))
        nan = jnp.full((), jnp.nan, losses.dtype)
        if reference == "nominal":  # E_theta[.] by self-normalised importance weights on theta_0 draws
            weights = jax.nn.softmax(log_rho)
            objective = jnp.sum(weights * losses)
            path_kl = jnp.sum(weights * log_rho)
        else:  # on-policy draws of theta_k
            objective = jnp.mean(losses)
            path_kl = nan if theta_ref is None else jnp.mean(logp_old - ambiguity_set.log_prob(theta_ref, traj))
        info = InnerInfo(objective, j_value, mu, clipped, jax.lax.stop_gradient(path_kl))
        return InnerState(generator, mu), info

    return Kernel(init, step)

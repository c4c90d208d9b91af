"""Stochastic approximation with adaptive importance sampling (tutorial Algorithm 3).

Projected stochastic subgradient descent on the joint objective f(u, theta) of the
Rockafellar-Uryasev formulation, with IS: at step n a batch Z_1..Z_b of the current IS law
(with log-likelihood ratios) gives the unbiased subgradient of

    F_b(u, theta) = (1 - lam) [u + (b beta)^-1 sum_j L_j (l(Z_j, theta) - u)_+]
                    + lam (1/b) sum_j L_j l(Z_j, theta),

then u <- u - gamma_n d_u F_b, theta <- Proj_Theta(theta - gamma_n d_theta F_b) with
gamma_n = c n^(-gamma), gamma in (1/2, 1), and Polyak-Ruppert averages of (u, theta) from
step ``average_start`` on. The IS parameter is re-chosen by the scheme's oracle at the
current iterate every ``update_every`` steps (1: every step).

Kernel API: ``init(key, theta0, u0) -> SAState`` and ``step(state, key, batch=None) ->
(SAState, SAInfo)``, pure and jittable, run by :func:`run_stochastic_approximation` with
``lax.scan`` (or by :func:`tailjax.training.fit`, whose step signature it matches).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp
from jaxtyping import Array

from tailjax._checks import check_open_unit, check_positive
from tailjax.importance.estimators import Loss, is_objective_from_losses, sample_losses
from tailjax.importance.oracle import ISScheme

__all__ = ["SAState", "SAInfo", "stochastic_approximation", "run_stochastic_approximation"]


class SAState(NamedTuple):
    u: Array
    theta: Array
    u_avg: Array  # Polyak averages
    theta_avg: Array
    is_param: Any
    count: Array  # steps taken


class SAInfo(NamedTuple):
    objective: Array  # batch estimate F_b at the pre-step iterate
    step_size: Array
    grad_norm: Array


def stochastic_approximation(
    loss: Loss,
    scheme: ISScheme,
    theta_set: Any,
    tail_prob: float,
    *,
    batch_size: int = 64,
    step_scale: float = 1.0,
    step_exponent: float = 0.75,
    update_every: int = 1,
    average_start: int = 0,
    risk_weight: float = 0.0,
) -> tuple[Callable[..., SAState], Callable[..., tuple[SAState, SAInfo]]]:
    """Build the ``(init, step)`` kernel of Algorithm 3.

    Args:
      loss: ``loss(x, theta)``, convex in theta.
      scheme: IS scheme; its oracle runs every ``update_every`` steps.
      theta_set: decision set (its ``project`` is applied after each step).
      tail_prob: beta in (0, 1).
      batch_size: samples per step (static).
      step_scale, step_exponent: gamma_n = step_scale * n^(-step_exponent),
        step_exponent in (1/2, 1).
      average_start: first step included in the Polyak average.
      risk_weight: mean-CVaR weight lam in [0, 1].
    """
    check_open_unit(tail_prob, "tail_prob")
    check_positive(step_scale, "step_scale")
    if not 0.5 < step_exponent < 1.0:
        raise ValueError(f"step_exponent must lie in (1/2, 1), got {step_exponent}")
    if int(batch_size) < 1 or int(update_every) < 1:
        raise ValueError(f"batch_size and update_every must be >= 1, got {batch_size}, {update_every}")
    if not 0.0 <= risk_weight <= 1.0:
        raise ValueError(f"risk_weight must lie in [0, 1], got {risk_weight}")

    def batch_objective(u, theta, z, log_lr):
        losses = sample_losses(loss, z, theta)
        tail = is_objective_from_losses(u, losses, log_lr, tail_prob)
        if risk_weight == 0.0:
            return tail
        lse, sign = logsumexp(log_lr, b=losses, return_sign=True)
        mean = sign * jnp.exp(lse) / losses.shape[0]
        return risk_weight * mean + (1.0 - risk_weight) * tail

    value_and_grad = jax.value_and_grad(batch_objective, argnums=(0, 1))

    def init(key: Array, theta0: Array, u0: Array | float = 0.0) -> SAState:
        theta = theta_set.project(jnp.asarray(theta0))
        u = jnp.asarray(u0, theta.dtype)
        params = scheme.choose(key, u, theta)
        return SAState(u, theta, u, theta, params, jnp.asarray(0, jnp.int32))

    def step(state: SAState, key: Array, batch: Any = None) -> tuple[SAState, SAInfo]:
        k_oracle, k_sample = jax.random.split(key)
        refresh = (state.count % update_every == 0) & (state.count > 0)
        params = jax.lax.cond(
            refresh,
            lambda: scheme.choose(k_oracle, state.u, state.theta),
            lambda: state.is_param,
        )
        z, log_lr = scheme.sample(k_sample, params, batch_size)
        dt = state.theta.dtype
        value, (g_u, g_theta) = value_and_grad(state.u, state.theta, z.astype(dt), log_lr.astype(dt))
        n = (state.count + 1).astype(dt)
        gamma = step_scale * n ** (-step_exponent)
        u = state.u - gamma * g_u
        theta = theta_set.project(state.theta - gamma * g_theta)
        k_avg = jnp.maximum(state.count + 1 - average_start, 0).astype(dt)
        w = jnp.where(k_avg > 0, 1.0 / jnp.maximum(k_avg, 1.0), 0.0)
        u_avg = state.u_avg + w * (u - state.u_avg)
        theta_avg = state.theta_avg + w * (theta - state.theta_avg)
        new = SAState(u, theta, u_avg, theta_avg, params, state.count + 1)
        grad_norm = jnp.sqrt(g_u**2 + jnp.sum(g_theta**2))
        return new, SAInfo(value, gamma, grad_norm)

    return init, step


def run_stochastic_approximation(
    key: Array,
    state: SAState,
    step: Callable[..., tuple[SAState, SAInfo]],
    num_steps: int,
) -> tuple[SAState, SAInfo]:
    """Run ``num_steps`` steps of ``step`` with ``lax.scan`` (step i uses fold_in(key, i))."""
    if int(num_steps) < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")

    def body(state, i):
        return step(state, jax.random.fold_in(key, i))

    return jax.lax.scan(body, state, jnp.arange(num_steps))

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

:func:`stochastic_approximation` returns a :class:`~tailjax.base.Kernel`:
``init(theta0, key, u0=0.0) -> SAState`` and ``step(state, key, batch=None) ->
(SAState, SAInfo)``. The (u, theta) update is :func:`tailjax.training.gradient_kernel`
with ``optax.sgd`` whose learning-rate schedule is gamma_n; the kernel adds the projection
onto Theta after each update, the Polyak averages and the IS parameter. Drive it with
:func:`tailjax.training.fit` (progress bar, checkpoints) or with
:func:`run_stochastic_approximation` (one ``lax.scan``, jittable); both use the key
``fold_in(key, i)`` at step i and give the same states.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.scipy.special import logsumexp
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import check_int, check_open_unit, check_positive
from tailjax.base import Kernel
from tailjax.importance.estimators import SampleLoss, is_objective_from_losses, sample_losses
from tailjax.importance.oracle import ISScheme
from tailjax.training import TrainState, gradient_kernel

__all__ = [
    "SAParams",
    "SAState",
    "SAInfo",
    "step_size_schedule",
    "stochastic_approximation",
    "run_stochastic_approximation",
]


class SAParams(NamedTuple):
    """The decision (u, theta) of the joint objective f(u, theta)."""

    u: Array  # () threshold (VaR estimate)
    theta: Array  # (d,) decision


class SAState(NamedTuple):
    train: TrainState  # params: the current SAParams; the SGD state; step (= n)
    average: SAParams  # Polyak-Ruppert averages of (u, theta)
    is_param: Any  # the IS parameter in use

    u = property(lambda self: self.train.params.u)
    theta = property(lambda self: self.train.params.theta)
    u_avg = property(lambda self: self.average.u)
    theta_avg = property(lambda self: self.average.theta)
    count = property(lambda self: self.train.step)


class SAInfo(NamedTuple):
    objective: Array  # batch estimate F_b at the pre-step iterate
    step_size: Array  # gamma_n
    grad_norm: Array  # norm of (d_u F_b, d_theta F_b)


def step_size_schedule(step_scale: float, step_exponent: float) -> Callable[[Array], Array]:
    """gamma_n = step_scale * n^(-step_exponent) with n = count + 1 (an optax schedule)."""

    def schedule(count):
        n = (jnp.asarray(count) + 1).astype(jnp.result_type(float))
        return step_scale * n ** (-step_exponent)

    return schedule


def stochastic_approximation(
    loss: SampleLoss,
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
) -> Kernel:
    """The kernel of Algorithm 3.

    Args:
      loss: ``loss(x, theta)``, convex in theta.
      scheme: IS scheme; its oracle runs every ``update_every`` steps.
      theta_set: decision set (its ``project`` is applied after each step).
      tail_prob: tail mass in (0, 1) of the loss's upper tail (the tutorial's beta).
      batch_size: samples per step (static).
      step_scale, step_exponent: gamma_n = step_scale * n^(-step_exponent),
        step_exponent in (1/2, 1) (the tutorial's c and gamma).
      update_every: steps between two calls of the scheme's oracle.
      average_start: first step included in the Polyak average.
      risk_weight: mean-CVaR weight in [0, 1] (the tutorial's lambda).

    Returns:
      ``Kernel(init, step)`` with ``init(theta0: (d,), key, u0=0.0) -> SAState`` (theta0
      is projected onto the set; the oracle picks the first IS parameter at (u0, theta0))
      and ``step(state, key, batch=None) -> (SAState, SAInfo)`` (``batch`` is unused: the
      samples are drawn from the scheme).
    """
    check_open_unit(tail_prob, "tail_prob")
    check_positive(step_scale, "step_scale")
    if not 0.5 < step_exponent < 1.0:
        raise ValueError(f"step_exponent must lie in (1/2, 1), got {step_exponent}")
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    update_every = check_int(update_every, "update_every", minimum=1)
    average_start = check_int(average_start, "average_start", minimum=0)
    if not 0.0 <= risk_weight <= 1.0:
        raise ValueError(f"risk_weight must lie in [0, 1], got {risk_weight}")
    schedule = step_size_schedule(step_scale, step_exponent)

    def batch_objective(params: SAParams, batch: tuple[Array, Array], key: Array):
        z, log_lr = batch
        losses = sample_losses(loss, z, params.theta)
        tail = is_objective_from_losses(params.u, losses, log_lr, tail_prob)
        if risk_weight == 0.0:
            return tail, ()
        lse, sign = logsumexp(log_lr, b=losses, return_sign=True)
        mean = sign * jnp.exp(lse) / losses.shape[0]
        return risk_weight * mean + (1.0 - risk_weight) * tail, ()

    sgd = gradient_kernel(batch_objective, optax.sgd(schedule))

    def init(theta0: Float[ArrayLike, " d"], key: Array, u0: Float[ArrayLike, ""] = 0.0) -> SAState:
        theta = theta_set.project(jnp.asarray(theta0))
        params = SAParams(jnp.asarray(u0, theta.dtype), theta)
        return SAState(sgd.init(params), params, scheme.choose(key, params.u, theta))

    def step(state: SAState, key: Array, batch: Any = None) -> tuple[SAState, SAInfo]:
        k_oracle, k_sample = jax.random.split(key)
        count = state.train.step
        refresh = (count % update_every == 0) & (count > 0)
        is_param = jax.lax.cond(
            refresh,
            lambda: scheme.choose(k_oracle, state.u, state.theta),
            lambda: state.is_param,
        )
        z, log_lr = scheme.sample(k_sample, is_param, batch_size)
        dt = state.theta.dtype
        train, info = sgd.step(state.train, k_sample, (z.astype(dt), log_lr.astype(dt)))
        params = train.params._replace(theta=theta_set.project(train.params.theta))
        train = train._replace(params=params)
        k_avg = jnp.maximum(train.step - average_start, 0).astype(dt)
        w = jnp.where(k_avg > 0, 1.0 / jnp.maximum(k_avg, 1.0), 0.0)
        average = jax.tree_util.tree_map(lambda a, x: a + w * (x - a), state.average, params)
        gamma = jnp.asarray(schedule(count), dt)
        return SAState(train, average, is_param), SAInfo(info.loss, gamma, info.grad_norm)

    return Kernel(init, step)


def run_stochastic_approximation(
    kernel: Kernel | Callable[..., tuple[SAState, SAInfo]],
    state: SAState,
    key: Array,
    num_steps: int,
) -> tuple[SAState, SAInfo]:
    """Run ``num_steps`` steps of ``kernel`` (or a bare step function) with ``lax.scan``.

    Step i uses the key ``fold_in(key, i)``, as :func:`tailjax.training.fit` does, so both
    drivers give the same final state. Returns the final state and the stacked infos
    (each field of shape ``(num_steps,)``). Jittable (``num_steps`` static).
    """
    num_steps = check_int(num_steps, "num_steps", minimum=1)
    step = kernel.step if isinstance(kernel, Kernel) else kernel

    def body(state, i):
        return step(state, jax.random.fold_in(key, i), None)

    return jax.lax.scan(body, state, jnp.arange(num_steps))

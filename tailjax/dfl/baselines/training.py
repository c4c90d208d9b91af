"""Training kernel, ``fit`` helper and evaluation decisions of the Pred-DFL baselines.

:func:`baseline_kernel` wraps :func:`tailjax.training.gradient_kernel` around a baseline
loss (:mod:`tailjax.dfl.baselines.losses`) and adds the solution cache of the contrastive
and ranking losses to the state: ``init(params, cache) -> BaselineState`` and
``step(state, key, batch) -> (BaselineState, GradientInfo)``. The step hands the cache to
the loss in ``batch.cache``; with ``solve_ratio > 0`` it then adds the oracle solutions of
a random ``solve_ratio`` share of the batch's new predictions to it (ring buffer), as in
Mulamba et al. and PyEPO.

:func:`fit_baseline` trains a point predictor (a Flax module such as
:class:`tailjax.nn.LinearPredictor`) with one of the losses under
:func:`tailjax.training.fit`; :func:`baseline_decisions` gives the evaluation decisions:
the exact decision at the point prediction (the CVaR of a point mass is its value), or,
given Pred-DFL+'s ``sigma``, the CVaR decision over Gaussian samples around it.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import check_int, check_open_unit, check_positive
from tailjax.base import Kernel
from tailjax.dfl.baselines.losses import DFLBatch
from tailjax.dfl.problems.base import ProblemInstance, decision, objective
from tailjax.dfl.proxy import check_finite_data
from tailjax.nn.predictors import init_predictor
from tailjax.training import FitResult, GradientInfo, TrainState, fit, gradient_kernel, minibatches

__all__ = [
    "BaselineState",
    "baseline_kernel",
    "fit_baseline",
    "baseline_decisions",
    "dfl_plus_sigma",
]


class BaselineState(NamedTuple):
    params: Any
    opt_state: Any
    step: Array  # () optimiser steps taken
    cache: Array  # (S, d) solution cache (read by the pool losses)
    cache_ptr: Array  # () next ring-buffer slot


def baseline_kernel(
    loss: Callable[[Any, DFLBatch, Array], tuple[Array, Any]],
    optimizer: optax.GradientTransformation,
    *,
    apply_fn: Callable[[Any, Array], Array] | None = None,
    oracle: Callable[[Array], Array] | None = None,
    solve_ratio: float = 0.0,
) -> Kernel:
    """The baseline kernel; see the module docstring.

    ``loss(params, batch, key) -> (value, aux)`` with ``batch`` a :class:`DFLBatch`;
    ``apply_fn`` and ``oracle`` (the predictor and the exact oracle) are needed only with
    ``solve_ratio`` in (0, 1], the share of each batch whose solutions join the cache.
    """
    if not 0.0 <= solve_ratio <= 1.0:
        raise ValueError(f"solve_ratio must lie in [0, 1], got {solve_ratio}")
    if solve_ratio > 0 and (apply_fn is None or oracle is None):
        raise ValueError("solve_ratio > 0 needs apply_fn and oracle")
    inner = gradient_kernel(loss, optimizer)

    def init(params: Any, cache: Float[ArrayLike, "S d"]) -> BaselineState:
        cache = jnp.asarray(cache)
        if cache.ndim != 2 or cache.shape[0] == 0:
            raise ValueError(f"cache must have shape (S, d) with S >= 1, got {cache.shape}")
        train = inner.init(params)
        return BaselineState(train.params, train.opt_state, train.step, cache, jnp.asarray(0, jnp.int32))

    def step(state: BaselineState, key: Array, batch: DFLBatch) -> tuple[BaselineState, GradientInfo]:
        k_loss, k_mask = jax.random.split(key)
        batch = batch._replace(cache=state.cache)
        train, info = inner.step(TrainState(state.params, state.opt_state, state.step), k_loss, batch)
        cache, ptr = state.cache, state.cache_ptr
        if solve_ratio > 0:
            c_hat = jax.lax.stop_gradient(apply_fn(train.params, batch.features))
            sols = jax.vmap(oracle)(c_hat).astype(cache.dtype)
            take = jax.random.bernoulli(k_mask, solve_ratio, (sols.shape[0],))
            slots = (ptr + jnp.cumsum(take) - 1) % cache.shape[0]
            slots = jnp.where(take, slots, cache.shape[0])  # out of range: dropped
            cache = cache.at[slots].set(sols, mode="drop")
            ptr = (ptr + jnp.sum(take).astype(jnp.int32)) % cache.shape[0]
        return BaselineState(train.params, train.opt_state, train.step, cache, ptr), info

    return Kernel(init, step)


def dfl_plus_sigma(costs: Float[ArrayLike, "n d"]) -> float:
    """Pred-DFL+'s usual noise scale: half the mean per-coordinate standard deviation of the
    training costs ``(n, d)``."""
    c = jnp.asarray(costs)
    if c.ndim != 2 or c.shape[0] == 0:
        raise ValueError(f"costs must have shape (n, d) with n >= 1, got {c.shape}")
    return 0.5 * float(jnp.mean(jnp.std(c, axis=0)))


def fit_baseline(
    key: Array,
    predictor: nn.Module,
    instance: ProblemInstance,
    features: Float[ArrayLike, "n p"],
    costs: Float[ArrayLike, "n d"],
    *,
    loss: Callable[..., tuple[Array, Any]],
    num_steps: int = 100,
    batch_size: int = 32,
    learning_rate: float = 1e-2,
    optimizer: optax.GradientTransformation | None = None,
    params: Any = None,
    solutions: Float[ArrayLike, "n d"] | None = None,
    solve_ratio: float = 0.0,
    validation: tuple[ArrayLike, ArrayLike] | None = None,
    patience: int | None = None,
    decide: Callable[[Array], Array] | None = None,
    eval_fn: Callable[[BaselineState], Any] | None = None,
    eval_every: int | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    config: Any = None,
    progress: bool = False,
    **loss_options: Any,
) -> FitResult:
    """Train ``predictor`` with a baseline ``loss`` on ``features (n, p)``, ``costs (n, d)``;
    a thin wrapper over :func:`tailjax.training.fit` with :func:`baseline_kernel`.

    Args:
      key: PRNG key; ``(init, minibatches, steps) = split(key, 3)``.
      predictor: Flax module ``features (B, p) -> c_hat (B, d)``.
      instance: the problem and its exact oracle (``instance.problem``, ``instance.oracle``).
      loss: a loss of :mod:`tailjax.dfl.baselines.losses` (called with ``apply_fn``,
        ``problem``, ``oracle`` and ``loss_options``, e.g. ``sigma`` for
        :func:`~tailjax.dfl.baselines.dfl_plus_loss`).
      num_steps: optimiser steps on minibatches of ``batch_size`` rows (at most n).
      optimizer: default Adam at ``learning_rate``.
      params: initial predictor parameters (default ``init_predictor``).
      solutions: cached hindsight-optimal w*(c) ``(n, d)`` (computed with the oracle if
        None); they also seed the solution cache.
      solve_ratio: share of each batch solved and added to the cache (pool losses); the
        cache then holds 2n solutions.
      validation: ``(features (m, p), costs (m, d))`` of a held-out split: the returned
        parameters are those (initial ones included) of lowest validation regret, PyEPO's
        normalised regret of the point decisions ``oracle(c_hat)`` on the realised costs,
        checked every ``eval_every`` steps; ``patience`` stops after that many checks
        without improvement (early stopping).
      eval_fn, eval_every, checkpoint_path, checkpoint_every, progress: see
        :func:`tailjax.training.fit` (the checkpoint header records the loss's name, the
        learning rate, batch size, solve ratio and ``loss_options``).
      config: more of the run's description for the checkpoint header (the data set, the
        predictor's kind, the stopping rule...): a resume with another one is refused.

    Returns the :class:`~tailjax.training.FitResult`; ``result.state.params`` are the
    predictor's parameters (:func:`baseline_decisions`).
    """
    x, c = jnp.asarray(features), jnp.asarray(costs)
    if x.ndim != 2 or c.ndim != 2 or x.shape[0] != c.shape[0] or 0 in x.shape:
        raise ValueError(f"features {x.shape} and costs {c.shape} must be (n, p) and (n, d) with n, p >= 1")
    if c.shape[1] != instance.problem.dim:
        raise ValueError(f"costs must have {instance.problem.dim} columns (the problem's dimension), got {c.shape}")
    if optimizer is None:
        check_positive(learning_rate, "learning_rate", allow_zero=True)
    check_finite_data(x, c, "features and costs")
    batch_size = check_int(batch_size, "batch_size")
    if not 1 <= batch_size <= x.shape[0]:
        raise ValueError(f"batch_size must lie in [1, {x.shape[0]}], got {batch_size}")
    dtype = jnp.result_type(float)
    x, c = x.astype(dtype), c.astype(dtype)
    if solutions is None:
        solutions = jax.jit(jax.vmap(instance.oracle))(c)
    w_star = jnp.asarray(solutions, dtype)
    k_init, k_data, k_fit = jax.random.split(key, 3)
    if params is None:
        params = init_predictor(predictor, k_init, x.shape[1], dtype)
    bound = functools.partial(loss, apply_fn=predictor.apply, problem=instance.problem,
                              oracle=instance.oracle, **loss_options)
    opt = optimizer if optimizer is not None else optax.adam(learning_rate)
    kernel = baseline_kernel(bound, opt, apply_fn=predictor.apply, oracle=instance.oracle,
                             solve_ratio=solve_ratio)
    cache = jnp.concatenate([w_star, w_star], axis=0) if solve_ratio > 0 else w_star
    state = kernel.init(params, cache)
    if solve_ratio > 0:
        state = state._replace(cache_ptr=jnp.asarray(w_star.shape[0], jnp.int32))
    name = getattr(loss, "__name__", type(loss).__name__)
    score = None
    if validation is not None:
        score = _validation_score(predictor, instance, validation, dtype, decide)
    return fit(
        kernel, state, k_fit, num_steps,
        batches=minibatches(k_data, DFLBatch(x, c, w_star), batch_size),
        eval_fn=eval_fn, eval_every=eval_every, validation=score, patience=patience,
        checkpoint_path=checkpoint_path, checkpoint_every=checkpoint_every,
        config=dict(loss=name, learning_rate=float(learning_rate), batch_size=batch_size,
                    solve_ratio=float(solve_ratio), loss_options=loss_options,
                    optimizer="adam" if optimizer is None else "custom",
                    **({} if config is None else {"run": config})),
        progress=progress, description=name,
    )


def _validation_score(predictor, instance, validation, dtype, decide=None):
    """``state -> normalised regret`` of the decisions ``decide(c_hat)`` (default the point
    decisions) on a held-out split."""
    xv, cv = (jnp.asarray(a) for a in validation)
    if xv.ndim != 2 or cv.ndim != 2 or xv.shape[0] != cv.shape[0] or xv.shape[0] == 0:
        raise ValueError(f"validation must be (features (m, p), costs (m, d)) with m >= 1, got "
                         f"{xv.shape} and {cv.shape}")
    check_finite_data(xv, cv, "validation")
    xv, cv = xv.astype(dtype), cv.astype(dtype)
    problem, oracle = instance.problem, instance.oracle
    decide = oracle if decide is None else decide
    value = jax.vmap(lambda c, w: objective(problem, c, w))
    f_opt = value(cv, jax.jit(jax.vmap(oracle))(cv))

    @jax.jit
    def regret(params):
        w = jax.vmap(decide)(jax.lax.stop_gradient(predictor.apply(params, xv)))
        return jnp.sum(value(cv, w) - f_opt) / jnp.sum(jnp.abs(f_opt))

    return lambda state: regret(state.params)


def baseline_decisions(
    predictor: nn.Module,
    params: Any,
    features: Float[ArrayLike, "N p"],
    instance: ProblemInstance,
    *,
    sigma: float | None = None,
    tail_prob: float = 1.0,
    key: Array | None = None,
    num_samples: int = 64,
    decide: Callable[[Array], Array] | None = None,
) -> Float[Array, "N d"]:
    """Evaluation decisions ``(N, d)`` of a trained predictor.

    ``decide`` given: ``decide(c_hat)`` per prediction (Diff-DRO's
    :func:`~tailjax.dfl.baselines.moment_dro_decision`; ``sigma`` must then be None).
    ``sigma=None``: the exact decision at the point prediction (``instance.oracle``).
    ``sigma`` given (Pred-DFL+): the CVaR decision (``reg = 0``) at ``tail_prob`` (the
    paper's alpha) over ``num_samples`` samples c_hat + sigma eps, keys from ``key``
    (default ``jax.random.key(0)``). Bad ``features`` shapes, ``sigma < 0``, ``tail_prob``
    outside (0, 1] or ``num_samples < 1`` raise ``ValueError``.
    """
    x = jnp.asarray(features, jnp.result_type(float))
    if x.ndim != 2 or 0 in x.shape:
        raise ValueError(f"features must have shape (N, p) with N, p >= 1, got {x.shape}")
    if sigma is not None:
        check_positive(sigma, "sigma", allow_zero=True)
        check_open_unit(tail_prob, "tail_prob", closed_right=True)
        num_samples = check_int(num_samples, "num_samples", minimum=1)
    if decide is not None and sigma is not None:
        raise ValueError("give decide or sigma, not both")
    c_hat = predictor.apply(params, x)
    if decide is not None:
        return jax.jit(jax.vmap(decide))(c_hat)
    if sigma is None:
        return jax.jit(jax.vmap(instance.oracle))(c_hat)
    key = jax.random.key(0) if key is None else key
    keys = jax.random.split(key, c_hat.shape[0])
    return _sampled_decisions(instance.problem, c_hat, keys, jnp.asarray(sigma, c_hat.dtype),
                              float(tail_prob), num_samples)


@functools.partial(jax.jit, static_argnums=(4, 5))
def _sampled_decisions(problem, c_hat, keys, sigma, tail_prob, num_samples):
    def one(ch, k):
        eps = jax.random.normal(k, (num_samples, ch.shape[0]), ch.dtype)
        return decision(problem, ch + sigma * eps, tail_prob, reg=0.0)

    return jax.vmap(one)(c_hat, keys)

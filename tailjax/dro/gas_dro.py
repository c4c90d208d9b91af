"""GAS-DRO (Algorithm 1 of Wen & Yang): DRO over a generative ambiguity set.

    min_w max_theta E_{x ~ P_theta} f(w, x)   s.t.  J(theta, P_0) <= epsilon      (eq. (7))

One outer iteration j of :func:`gas_dro`'s ``step``:

1. InnerMax: K steps of :func:`tailjax.dro.inner.inner_max_kernel` on theta and mu, all
   under one ``lax.scan``; theta(j) is drawn uniformly among the inner iterates
   theta_1..theta_K (reservoir sampling in the scan, so no copy of all K is kept);
2. draw a data set S_j of ``outer_samples`` points from P_theta(j);
3. ``outer_steps`` steps of a :func:`tailjax.training.gradient_kernel` on
   :func:`gas_dro_outer_loss`, mean_{x in S_j} f(w, x) (with ``nominal_weight = lam > 0``:
   (1 - lam) mean_{S_j} f + lam mean_{B_0} f, B_0 a batch of nominal data; the issue's
   Algorithm 1 is lam = 0, the default).

The returned predictor is the last iterate, or (``select_predictor(state, "uniform")``) one
drawn uniformly among the outer iterates, again by reservoir sampling; :func:`fit_gas_dro`
runs the outer iterations with :func:`tailjax.training.fit`. With
``warm_start=False`` every InnerMax restarts from the nominal generator and mu = mu_0.
Defaults follow the paper's Appendix D.3: K = 10 inner steps of 10 PPO epochs, T' = 15
(set on the ambiguity set), kappa = 0.4, epsilon = 0.015, eta = 0.01, batch 64, the PPO
reference fixed at the pre-trained theta_0 with the initial trajectory set drawn once per
InnerMax (``reference="nominal"``); the generator optimiser of the paper is
``optax.adam(1e-5)``. The ambiguity set carries the rest of the inner problem as written
(:func:`tailjax.dro.ddpm_ambiguity_set`: earlier steps frozen at theta_0, J over t <= T').
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array

from tailjax import training
from tailjax._checks import check_int, check_scalar, is_concrete, nan_where, traced_out_of_range
from tailjax.base import Kernel
from tailjax.dro.ambiguity import AmbiguitySet
from tailjax.dro.erm import per_sample_losses
from tailjax.dro.inner import InnerBatch, InnerState, inner_max_kernel

__all__ = [
    "GasDroConfig",
    "GasDroState",
    "GasDroInfo",
    "GasDroBatch",
    "OuterBatch",
    "gas_dro_outer_loss",
    "gas_dro_kernel",
    "select_predictor",
    "fit_gas_dro",
]


class GasDroConfig(NamedTuple):
    inner_steps: int = 10  # K
    epochs: int = 10  # PPO epochs per inner step
    clip: float = 0.4  # kappa
    budget: float = 0.015  # epsilon
    dual_lr: float = 0.01  # eta
    num_samples: int = 64  # trajectories per inner step
    outer_samples: int = 64  # |S_j|
    outer_steps: int = 1  # predictor steps per outer iteration
    estimator: str = "ppo"  # or "reinforce"
    advantages: str = "center"  # or "raw", "standardize"
    warm_start: bool = True
    nominal_weight: float = 0.0  # lam: weight of a nominal batch in the outer loss (0: S_j only)
    reference: str = "nominal"  # PPO reference theta_0, draws made once per InnerMax; or "current"


class GasDroBatch(NamedTuple):
    """What ``step`` takes when the outer loss mixes in nominal data (``nominal_weight > 0``)."""

    generator_data: Any  # K stacked nominal batches in the generator's space (for J)
    nominal: Any  # a batch of nominal samples in the predictor's space (for the outer loss)


class OuterBatch(NamedTuple):
    """The outer loss's input: generated samples S_j and (optionally) a nominal batch B_0."""

    samples: Any  # pytree, leading axis |S_j|
    nominal: Any = None  # pytree, leading axis |B_0|, or None


class GasDroState(NamedTuple):
    predictor: training.TrainState  # w and its optimiser state
    inner: InnerState  # theta (current inner iterate) with its optimiser state, and mu
    nominal: Any  # (theta_0, mu_0), the restart point when warm_start=False
    selected: Any  # predictor drawn uniformly among the outer iterates so far
    count: Array  # outer iterations done


class GasDroInfo(NamedTuple):
    loss: Array  # outer loss (mean f over S_j, mixed with the nominal batch) before the update
    adversarial_loss: Array  # mean f over the last inner step's trajectories
    reconstruction: Array  # J(theta_K, P_0)
    mu: Array
    clip_fraction: Array
    path_kl: Array  # E_theta log(P_theta / P_theta0) over the adversary's steps, last inner step


def _reservoir(key, selected, candidate, count):
    """Keep ``candidate`` with probability 1 / count: a uniform pick among ``count`` items."""
    take = jax.random.uniform(key) * count.astype(jnp.float32) < 1.0
    return jax.tree_util.tree_map(lambda a, b: jnp.where(take, b, a), selected, candidate)


def gas_dro_outer_loss(
    params: Any,
    batch: OuterBatch,
    key: jax.Array,
    *,
    loss_fn: Callable[[Any, Any], Array],
    nominal_weight: float = 0.0,
) -> tuple[Array, dict]:
    """(1 - lam) mean_{x in S_j} f(w, x) + lam mean_{x in B_0} f(w, x): ``(value, {})``.

    ``nominal_weight`` is lam in [0, 1); with lam = 0 (Algorithm 1) ``batch.nominal`` is
    not used and may be None. A traced lam outside [0, 1) gives NaN.
    """
    del key
    check_scalar(nominal_weight, "nominal_weight")
    if is_concrete(nominal_weight):
        nominal_weight = float(np.reshape(nominal_weight, ()))  # a (1,) array passes check_scalar
        if not 0.0 <= nominal_weight < 1.0:
            raise ValueError(f"nominal_weight must lie in [0, 1), got {nominal_weight}")
    value = jnp.mean(per_sample_losses(loss_fn, params, batch.samples, "batch.samples"))
    if not is_concrete(nominal_weight):
        lam = jnp.asarray(nominal_weight)
        bad = traced_out_of_range(lam, low=0.0, high=1.0, low_closed=True)
        if batch.nominal is None:  # only lam = 0 is defined without a nominal batch
            return jnp.where(bad | (lam != 0), jnp.nan, value), {}
        nominal = jnp.mean(per_sample_losses(loss_fn, params, batch.nominal, "batch.nominal"))
        return nan_where(bad, (1.0 - lam) * value + lam * nominal), {}
    lam = float(nominal_weight)
    if lam > 0.0:
        if batch.nominal is None:
            raise ValueError("nominal_weight > 0 needs a nominal batch (OuterBatch.nominal)")
        value = (1.0 - lam) * value + lam * jnp.mean(per_sample_losses(loss_fn, params, batch.nominal,
                                                                       "batch.nominal"))
    return value, {}


def _nominal_weight(config: GasDroConfig) -> float:
    return float(np.reshape(config.nominal_weight, ()))  # a (1,) array passes check_scalar


def _check_config(config: GasDroConfig) -> None:
    for field in ("inner_steps", "outer_steps", "outer_samples"):
        check_int(getattr(config, field), f"config.{field}", minimum=1)
    check_scalar(config.nominal_weight, "config.nominal_weight")
    if not 0.0 <= _nominal_weight(config) < 1.0:
        raise ValueError(f"config.nominal_weight must lie in [0, 1), got {config.nominal_weight}")
    if config.reference not in ("nominal", "current"):
        raise ValueError(f"config.reference must be 'nominal' or 'current', got {config.reference!r}")


def gas_dro_kernel(
    ambiguity_set: AmbiguitySet,
    loss_fn: Callable[[Any, Any], Array],
    optimizer: optax.GradientTransformation,
    generator_optimizer: optax.GradientTransformation,
    config: GasDroConfig = GasDroConfig(),
) -> Kernel:
    """GAS-DRO (Algorithm 1) as a :class:`~tailjax.base.Kernel`; one step is one outer iteration.

    ``init(params, generator_params, mu=0.0) -> GasDroState``;
    ``step(state, key, batch) -> (GasDroState, GasDroInfo)`` with ``batch`` a stack of K
    nominal batches in the generator's space (leading axis K = ``config.inner_steps``; an
    array or an ``(x, cond)`` pair), batch k used for J in inner step k; with
    ``config.nominal_weight > 0``, ``batch`` is a :class:`GasDroBatch` that also carries a
    nominal batch in the predictor's space. ``loss_fn(w, sample)`` is the predictor's
    per-sample loss f; ``optimizer`` updates w, ``generator_optimizer`` theta.
    """
    _check_config(config)
    lam = _nominal_weight(config)
    inner = inner_max_kernel(
        ambiguity_set,
        loss_fn,
        generator_optimizer,
        clip=config.clip,
        budget=config.budget,
        dual_lr=config.dual_lr,
        num_samples=config.num_samples,
        epochs=config.epochs,
        estimator=config.estimator,
        advantages=config.advantages,
        reference=config.reference,
    )
    outer = training.gradient_kernel(
        functools.partial(gas_dro_outer_loss, loss_fn=loss_fn, nominal_weight=lam), optimizer
    )

    def init(params: Any, generator_params: Any, mu: Any = 0.0) -> GasDroState:
        inner_state = inner.init(generator_params, mu)
        return GasDroState(outer.init(params), inner_state, (generator_params, inner_state.mu), params,
                           jnp.zeros((), jnp.int32))

    def step(state: GasDroState, key: jax.Array, batch: Any) -> tuple[GasDroState, GasDroInfo]:
        data, nominal = (batch.generator_data, batch.nominal) if isinstance(batch, GasDroBatch) else (batch, None)
        if lam > 0.0 and nominal is None:
            raise ValueError("config.nominal_weight > 0 needs batch=GasDroBatch(generator_data, nominal)")
        K = config.inner_steps
        leading = jax.tree_util.tree_leaves(data)[0].shape[0]
        if leading != K:
            raise ValueError(f"batch must stack config.inner_steps={K} batches, got {leading}")
        k_inner, k_pick, k_sample, k_w = jax.random.split(key, 4)
        inner0 = state.inner if config.warm_start else inner.init(*state.nominal)
        w = state.predictor.params
        theta0 = state.nominal[0]
        draws = None
        if config.reference == "nominal":  # the initial set, drawn once per InnerMax from theta_0
            draws = ambiguity_set.sample(jax.random.fold_in(k_inner, K), theta0, config.num_samples)

        def body(carry, inp):
            inner_state, picked = carry
            k, k_res, data_k, idx = inp
            inner_state, info = inner.step(inner_state, k, InnerBatch(w, data_k, theta0, draws))
            picked = _reservoir(k_res, picked, inner_state.generator.params, idx + 1)
            return (inner_state, picked), info

        inputs = (jax.random.split(k_inner, K), jax.random.split(k_pick, K), data, jnp.arange(K))
        (inner_state, theta_j), infos = jax.lax.scan(body, (inner0, inner0.generator.params), inputs)

        samples, _ = ambiguity_set.sample(k_sample, theta_j, config.outer_samples)
        outer_batch = OuterBatch(jax.lax.stop_gradient(samples), nominal)

        def outer_step(predictor, k):
            return outer.step(predictor, k, outer_batch)

        outer_keys = jax.random.split(jax.random.fold_in(k_sample, 1), config.outer_steps)
        predictor, outer_infos = jax.lax.scan(outer_step, state.predictor, outer_keys)
        count = state.count + 1
        selected = _reservoir(k_w, state.selected, predictor.params, count)
        new = GasDroState(predictor, inner_state, state.nominal, selected, count)
        last = jax.tree_util.tree_map(lambda x: x[-1], infos)
        info = GasDroInfo(outer_infos.loss[0], last.objective, last.reconstruction, last.mu, last.clip_fraction,
                          last.path_kl)
        return new, info

    return Kernel(init, step)


def select_predictor(state: GasDroState, rule: str = "last") -> Any:
    """The predictor to return: ``"last"`` iterate or ``"uniform"`` among the outer iterates."""
    if rule == "last":
        return state.predictor.params
    if rule == "uniform":
        return state.selected
    raise ValueError(f"rule must be 'last' or 'uniform', got {rule!r}")


def fit_gas_dro(
    key: jax.Array,
    kernel: Kernel,
    state: GasDroState,
    data: Any,
    *,
    num_steps: int,
    config: GasDroConfig,
    batch_size: int = 64,
    nominal: Any = None,
    nominal_batch_size: int | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    run_config: Mapping[str, Any] | None = None,
    **fit_kwargs: Any,
) -> training.FitResult:
    """Run ``num_steps`` outer iterations of a :func:`gas_dro_kernel` with
    :func:`tailjax.training.fit` (progress bar, evaluation, checkpoint/resume).

    Args:
      key: PRNG key of the run (minibatch order and the steps' keys).
      kernel, state: from :func:`gas_dro_kernel` built with ``config``, and its ``init``.
      data: the whole nominal set in the generator's space (pytree, leading axis n); step i
        gets ``config.inner_steps`` minibatches of ``batch_size`` rows, stacked.
      config: the :class:`GasDroConfig` of the kernel.
      nominal: with ``config.nominal_weight > 0``, the nominal samples in the predictor's
        space; step i gets a minibatch of ``nominal_batch_size`` rows (default ``batch_size``).
      checkpoint_path: resume from / write to this file; the header records ``config``,
        the batch sizes and ``run_config`` (e.g. learning rates), and a resume with other
        values is refused.
      fit_kwargs: passed to :func:`tailjax.training.fit` (``eval_fn``, ``eval_every``,
        ``checkpoint_every``, ``progress``, ``description``, ``jit``).
    """
    _check_config(config)
    if _nominal_weight(config) > 0.0 and nominal is None:
        raise ValueError("config.nominal_weight > 0 needs nominal (samples in the predictor's space)")
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    if nominal_batch_size is not None:
        nominal_batch_size = check_int(nominal_batch_size, "nominal_batch_size", minimum=1)
    for name, tree in (("data", data), ("nominal", nominal)):
        for leaf in jax.tree_util.tree_leaves(tree):
            a = np.asarray(leaf)
            if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
                raise ValueError(f"{name} holds NaN or infinite values")
    k_data, k_nominal, k_run = jax.random.split(key, 3)
    generator_batches = training.minibatches(k_data, data, batch_size, stack=config.inner_steps)
    batches = generator_batches
    nominal_size = batch_size if nominal_batch_size is None else nominal_batch_size
    if _nominal_weight(config) > 0.0:
        nominal_batches = training.minibatches(k_nominal, nominal, nominal_size)
        batches = lambda i: GasDroBatch(generator_batches(i), nominal_batches(i))  # noqa: E731
    header = {"gas_dro": config, "batch_size": int(batch_size), "nominal_batch_size": int(nominal_size),
              **dict(run_config or {})}
    fit_kwargs.setdefault("description", "GAS-DRO")
    return training.fit(kernel, state, k_run, num_steps, batches=batches, checkpoint_path=checkpoint_path,
                        config=header, **fit_kwargs)

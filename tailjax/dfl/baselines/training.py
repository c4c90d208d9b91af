"""Training kernel, ``fit`` helper and evaluation decisions of the Pred-DFL baselines.

``baseline_kernel(loss, optimizer, ...)`` returns a pure pair ``init(params, cache) ->
BaselineState`` and ``step(state, key, batch) -> (BaselineState, BaselineInfo)``. The
state carries the solution cache of the contrastive/ranking losses; with
``solve_ratio > 0`` each step adds the oracle solutions of a random ``solve_ratio`` share
of the batch's predictions to it (ring buffer), as in Mulamba et al. and PyEPO.

:func:`fit_baseline` wires a predictor (linear or MLP), the loss, optax and
:func:`tailjax.training.fit` (tqdm, checkpoint/resume) on a data set.
:func:`baseline_decisions` gives the evaluation decisions: the exact decision on the point
prediction (the CVaR of a point mass is its value), or for ``dfl+`` the CVaR decision over
Gaussian samples around it.
"""

from __future__ import annotations

import os
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array

from tailjax.dfl.baselines.losses import POOL_METHODS, DFLBatch, make_loss
from tailjax.dfl.problems.base import ProblemInstance, decision
from tailjax.nn.predictors import init_predictor, make_predictor
from tailjax.training import FitResult, fit

__all__ = [
    "BaselineState",
    "BaselineInfo",
    "baseline_kernel",
    "BaselineFit",
    "fit_baseline",
    "baseline_decisions",
    "minibatches",
]


class BaselineState(NamedTuple):
    params: Any
    opt_state: Any
    cache: Array  # (S, d) solution cache (unused by mse/spo+/dfl)
    cache_ptr: Array  # () next ring-buffer slot


class BaselineInfo(NamedTuple):
    loss: Array
    grad_norm: Array


def baseline_kernel(
    loss_fn: Callable[[Any, DFLBatch, Array], Array],
    optimizer: optax.GradientTransformation,
    *,
    apply_fn: Callable[[Any, Array], Array] | None = None,
    oracle: Callable[[Array], Array] | None = None,
    solve_ratio: float = 0.0,
):
    """``(init, step)`` for a baseline loss; see the module docstring."""
    if not 0.0 <= solve_ratio <= 1.0:
        raise ValueError(f"solve_ratio must lie in [0, 1], got {solve_ratio}")
    if solve_ratio > 0 and (apply_fn is None or oracle is None):
        raise ValueError("solve_ratio > 0 needs apply_fn and oracle")

    def init(params, cache: Array) -> BaselineState:
        cache = jnp.asarray(cache)
        if cache.ndim != 2 or cache.shape[0] == 0:
            raise ValueError(f"cache must have shape (S, d) with S >= 1, got {cache.shape}")
        return BaselineState(params, optimizer.init(params), cache, jnp.asarray(0, jnp.int32))

    def step(state: BaselineState, key: Array, batch: DFLBatch):
        k_loss, k_mask = jax.random.split(key)
        batch = batch._replace(cache=state.cache)
        loss, grads = jax.value_and_grad(loss_fn)(state.params, batch, k_loss)
        # optax mixes its int32 step count with float hyper-parameters: run it under
        # standard promotion so that strict-promotion users (and the tests) work.
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
        cache, ptr = state.cache, state.cache_ptr
        if solve_ratio > 0:
            c_hat = jax.lax.stop_gradient(apply_fn(params, batch.features))
            sols = jax.vmap(oracle)(c_hat).astype(cache.dtype)
            take = jax.random.bernoulli(k_mask, solve_ratio, (sols.shape[0],))
            slots = (ptr + jnp.cumsum(take) - 1) % cache.shape[0]
            slots = jnp.where(take, slots, cache.shape[0])  # out of range: dropped
            cache = cache.at[slots].set(sols, mode="drop")
            ptr = (ptr + jnp.sum(take).astype(jnp.int32)) % cache.shape[0]
        info = BaselineInfo(loss, optax.global_norm(grads))
        return BaselineState(params, opt_state, cache, ptr), info

    return init, step


def minibatches(key: Array, num_data: int, batch_size: int) -> Callable[[int], np.ndarray]:
    """``index_fn(i)``: indices of step ``i``; a fresh permutation per epoch (a pure function
    of ``i``, so resumed runs see the same batches). Incomplete last batches are dropped."""
    if batch_size < 1 or batch_size > num_data:
        raise ValueError(f"batch_size must lie in [1, {num_data}], got {batch_size}")
    per_epoch = num_data // batch_size
    seed = int(jax.random.randint(key, (), 0, 2**31 - 1))

    def index_fn(i: int) -> np.ndarray:
        epoch, j = divmod(int(i), per_epoch)
        perm = np.random.default_rng([seed, epoch]).permutation(num_data)
        return perm[j * batch_size : (j + 1) * batch_size]

    return index_fn


class BaselineFit(NamedTuple):
    method: str
    module: Any
    state: BaselineState
    result: FitResult
    sigma: float
    apply_fn: Callable[[Any, Array], Array]


def fit_baseline(
    method: str,
    key: Array,
    instance: ProblemInstance,
    features: np.ndarray,
    costs: np.ndarray,
    *,
    predictor: str = "linear",
    hidden: Sequence[int] = (64,),
    epochs: int = 10,
    batch_size: int = 32,
    learning_rate: float = 1e-2,
    optimizer: optax.GradientTransformation | None = None,
    solutions: np.ndarray | None = None,
    solve_ratio: float = 0.0,
    tail_prob: float = 1.0,
    num_samples: int = 16,
    sigma: float | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    eval_fn: Callable[[BaselineState], Any] | None = None,
    eval_every: int | None = None,
    progress: bool = False,
    **loss_kwargs,
) -> BaselineFit:
    """Train one baseline on ``features (n, p)``, ``costs (n, d)`` with Adam.

    ``solutions``: cached hindsight-optimal w*(c) (computed with ``instance.oracle`` if
    None); they also seed the solution cache. ``sigma`` (Pred-DFL+) defaults to half the
    mean per-coordinate standard deviation of the training costs.
    """
    x = jnp.asarray(features)
    c = jnp.asarray(costs)
    if x.ndim != 2 or c.ndim != 2 or x.shape[0] != c.shape[0]:
        raise ValueError(f"features {x.shape} and costs {c.shape} must be (n, p) and (n, d)")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    dtype = jnp.result_type(float)
    x, c = x.astype(dtype), c.astype(dtype)
    if solutions is None:
        solutions = jax.jit(jax.vmap(instance.oracle))(c)
    w_star = jnp.asarray(solutions, dtype)
    if sigma is None:
        sigma = 0.5 * float(jnp.mean(jnp.std(c, axis=0)))
    module = make_predictor(predictor, c.shape[1], hidden=hidden)
    k_init, k_data, k_fit = jax.random.split(key, 3)
    params = init_predictor(module, k_init, x.shape[1], dtype)
    apply_fn = module.apply
    loss = make_loss(
        method, apply_fn, instance.problem, instance.oracle, tail_prob=tail_prob,
        num_samples=num_samples, sigma=sigma, **loss_kwargs,
    )
    opt = optimizer if optimizer is not None else optax.adam(learning_rate)
    ratio = solve_ratio if method in POOL_METHODS else 0.0
    init, step = baseline_kernel(loss, opt, apply_fn=apply_fn, oracle=instance.oracle, solve_ratio=ratio)
    cache = jnp.concatenate([w_star, w_star], axis=0) if ratio > 0 else w_star
    state = init(params, cache)
    if ratio > 0:
        state = state._replace(cache_ptr=jnp.asarray(w_star.shape[0], jnp.int32))
    index_fn = minibatches(k_data, x.shape[0], batch_size)

    def batch_fn(i):
        idx = index_fn(i)
        return DFLBatch(x[idx], c[idx], w_star[idx])

    num_steps = epochs * (x.shape[0] // batch_size)
    result = fit(
        step, state, k_fit, num_steps, batch_fn=batch_fn, eval_fn=eval_fn, eval_every=eval_every,
        checkpoint_path=checkpoint_path, progress=progress, description=f"{method} ({predictor})",
    )
    return BaselineFit(method, module, result.state, result, float(sigma), apply_fn)


def baseline_decisions(
    trained: BaselineFit,
    features: np.ndarray,
    instance: ProblemInstance,
    *,
    tail_prob: float = 1.0,
    key: Array | None = None,
    num_samples: int = 64,
) -> Array:
    """Evaluation decisions ``(N, d)``: the exact decision at the point prediction, or for
    ``dfl+`` the CVaR decision (``reg = 0``) over ``num_samples`` Gaussian samples."""
    x = jnp.asarray(features, jnp.result_type(float))
    c_hat = trained.apply_fn(trained.state.params, x)
    if trained.method != "dfl+":
        return jax.jit(jax.vmap(instance.oracle))(c_hat)
    key = jax.random.key(0) if key is None else key
    keys = jax.random.split(key, c_hat.shape[0])
    sigma = trained.sigma

    @jax.jit
    def one(ch, k):
        eps = jax.random.normal(k, (num_samples, ch.shape[0]), ch.dtype)
        return decision(instance.problem, ch + sigma * eps, tail_prob, reg=0.0)

    return jax.vmap(one)(c_hat, keys)

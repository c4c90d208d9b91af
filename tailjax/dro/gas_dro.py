"""GAS-DRO (Algorithm 1 of Wen & Yang): DRO over a generative ambiguity set.

    min_w max_theta E_{x ~ P_theta} f(w, x)   s.t.  J(theta, P_0) <= epsilon      (eq. (7))

One outer iteration j of :func:`gas_dro`'s ``step``:

1. InnerMax: K inner steps (:func:`tailjax.dro.inner.build_inner_step`) on theta and mu,
   all under one ``lax.scan``; theta(j) is drawn uniformly among the inner iterates
   theta_1..theta_K (reservoir sampling in the scan, so no copy of all K is kept);
2. draw a data set S_j of ``outer_samples`` points from P_theta(j);
3. ``outer_steps`` gradient steps of the predictor optimiser on mean_{x in S_j} f(w, x)
   (with ``nominal_weight = lam > 0``: on (1 - lam) mean_{S_j} f + lam mean_{B_0} f, B_0 a
   batch of nominal data; the issue's Algorithm 1 is lam = 0, the default).

The returned predictor is the last iterate, or (``select_predictor(state, "uniform")``) one
drawn uniformly among the outer iterates, again by reservoir sampling. With
``warm_start=False`` every InnerMax restarts from the nominal generator and mu = mu_0.
Defaults follow the paper's Appendix D.3: K = 10 inner steps of 10 PPO epochs, T' = 15
(set on the ambiguity set), kappa = 0.4, epsilon = 0.015, eta = 0.01, batch 64; the
generator optimiser of the paper is ``optax.adam(1e-5)``.
"""

from __future__ import annotations

import os
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tailjax import training
from tailjax.dro.ambiguity import AmbiguitySet
from tailjax.dro.inner import InnerState, build_inner_step

__all__ = [
    "GasDroConfig",
    "GasDroState",
    "GasDroInfo",
    "GasDroBatch",
    "gas_dro",
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


class GasDroBatch(NamedTuple):
    """What ``step`` takes when the outer loss mixes in nominal data (``nominal_weight > 0``)."""

    generator_data: Any  # K stacked nominal batches in the generator's space (for J)
    nominal: Any  # a batch of nominal samples in the predictor's space (for the outer loss)


class GasDroState(NamedTuple):
    params: Any  # predictor w
    opt_state: Any
    generator: Any  # theta, current inner iterate
    generator_opt_state: Any
    mu: jax.Array
    nominal: Any  # theta_0 (used when warm_start=False)
    selected: Any  # predictor drawn uniformly among the outer iterates so far
    count: jax.Array  # outer iterations done


class GasDroInfo(NamedTuple):
    loss: jax.Array  # outer loss (mean f over S_j, mixed with the nominal batch) before the update
    adversarial_loss: jax.Array  # mean f over the last inner step's trajectories
    reconstruction: jax.Array  # J(theta_K, P_0)
    mu: jax.Array
    clip_fraction: jax.Array


def _reservoir(key, selected, candidate, count):
    """Keep ``candidate`` with probability 1 / count: a uniform pick among ``count`` items."""
    take = jax.random.uniform(key) * count.astype(jnp.float32) < 1.0
    return jax.tree_util.tree_map(lambda a, b: jnp.where(take, b, a), selected, candidate)


def gas_dro(
    ambiguity_set: AmbiguitySet,
    loss_fn: Callable[[Any, Any], jax.Array],
    optimizer: optax.GradientTransformation,
    generator_optimizer: optax.GradientTransformation,
    config: GasDroConfig = GasDroConfig(),
) -> tuple[Callable[..., GasDroState], Callable[..., tuple[GasDroState, GasDroInfo]]]:
    """Build the GAS-DRO kernel ``(init, step)``.

    ``init(params, generator_params, mu=0.0) -> GasDroState``;
    ``step(state, key, data) -> (state, info)`` with ``data`` a stack of K nominal batches
    (leading axis K; an array or an ``(x, cond)`` pair), batch k used for J in inner step k;
    with ``config.nominal_weight > 0``, ``data`` is a :class:`GasDroBatch` that also carries
    a nominal batch in the predictor's space. ``loss_fn(w, sample)`` is the per-sample loss
    f of the predictor.
    """
    if int(config.inner_steps) < 1:
        raise ValueError(f"config.inner_steps must be >= 1, got {config.inner_steps}")
    if int(config.outer_steps) < 1:
        raise ValueError(f"config.outer_steps must be >= 1, got {config.outer_steps}")
    if int(config.outer_samples) < 1:
        raise ValueError(f"config.outer_samples must be >= 1, got {config.outer_samples}")
    lam = float(config.nominal_weight)
    if not 0.0 <= lam < 1.0:
        raise ValueError(f"config.nominal_weight must lie in [0, 1), got {config.nominal_weight}")
    inner_step = build_inner_step(
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
    )

    def init(params, generator_params, mu=0.0) -> GasDroState:
        mu = jnp.asarray(mu, jnp.float32)
        return GasDroState(
            params,
            optimizer.init(params),
            generator_params,
            generator_optimizer.init(generator_params),
            mu,
            (generator_params, mu),
            params,
            jnp.zeros((), jnp.int32),
        )

    def mean_loss(w, samples):
        return jnp.mean(jax.vmap(loss_fn, in_axes=(None, 0))(w, samples))

    def step(state: GasDroState, key, data):
        nominal = None
        if isinstance(data, GasDroBatch):
            data, nominal = data.generator_data, data.nominal
        if lam > 0.0 and nominal is None:
            raise ValueError("config.nominal_weight > 0 needs data=GasDroBatch(generator_data, nominal)")
        k_inner, k_pick, k_sample, k_w = jax.random.split(key, 4)
        if config.warm_start:
            inner0 = InnerState(state.generator, state.generator_opt_state, state.mu)
        else:
            theta0, mu0 = state.nominal
            inner0 = InnerState(theta0, generator_optimizer.init(theta0), mu0)

        def body(carry, inp):
            inner, picked = carry
            k, k_res, batch, idx = inp
            inner, info = inner_step(inner, k, state.params, batch)
            picked = _reservoir(k_res, picked, inner.params, idx + 1)
            return (inner, picked), info

        K = config.inner_steps
        leading = jax.tree_util.tree_leaves(data)[0].shape[0]
        if leading != K:
            raise ValueError(f"data must stack config.inner_steps={K} batches, got {leading}")
        inputs = (jax.random.split(k_inner, K), jax.random.split(k_pick, K), data, jnp.arange(K))
        (inner, theta_j), infos = jax.lax.scan(body, (inner0, inner0.params), inputs)

        samples, _ = ambiguity_set.sample(k_sample, theta_j, config.outer_samples)
        samples = jax.lax.stop_gradient(samples)

        def outer_loss(w):
            value = mean_loss(w, samples)
            if lam > 0.0:
                value = (1.0 - lam) * value + lam * mean_loss(w, nominal)
            return value

        def outer(carry, _):
            w, opt_state = carry
            value, grads = jax.value_and_grad(outer_loss)(w)
            updates, opt_state = optimizer.update(grads, opt_state, w)
            return (optax.apply_updates(w, updates), opt_state), value

        (w, opt_state), values = jax.lax.scan(
            outer, (state.params, state.opt_state), None, length=config.outer_steps
        )
        count = state.count + 1
        selected = _reservoir(k_w, state.selected, w, count)
        new = GasDroState(w, opt_state, inner.params, inner.opt_state, inner.mu, state.nominal,
                          selected, count)
        last = jax.tree_util.tree_map(lambda x: x[-1], infos)
        info = GasDroInfo(values[0], last.objective, last.reconstruction, last.mu, last.clip_fraction)
        return new, info

    return init, step


def select_predictor(state: GasDroState, rule: str = "last") -> Any:
    """The predictor to return: ``"last"`` iterate or ``"uniform"`` among the outer iterates."""
    if rule == "last":
        return state.params
    if rule == "uniform":
        return state.selected
    raise ValueError(f"rule must be 'last' or 'uniform', got {rule!r}")


def stacked_batches(data: Any, batch_size: int, stack: int, seed: int = 0) -> Callable[[int], Any]:
    """``batch_fn(i)``: ``stack`` minibatches of ``batch_size`` rows of ``data`` (pytree of
    arrays with a common leading axis), drawn without replacement from a generator seeded by
    (seed, i) so that a resumed run sees the same batches."""
    leaves = jax.tree_util.tree_leaves(data)
    n = leaves[0].shape[0]
    if batch_size > n:
        raise ValueError(f"batch_size={batch_size} exceeds the {n} data points")

    def batch_fn(i):
        rng = np.random.default_rng((seed, i))
        idx = np.stack([rng.choice(n, batch_size, replace=False) for _ in range(stack)])
        return jax.tree_util.tree_map(lambda a: np.asarray(a)[idx], data)

    return batch_fn


def fit_gas_dro(
    kernel: tuple[Callable, Callable],
    state: GasDroState,
    key: jax.Array,
    data: Any,
    num_steps: int,
    config: GasDroConfig = GasDroConfig(),
    batch_size: int = 64,
    checkpoint_path: str | os.PathLike | None = None,
    **fit_kwargs: Any,
) -> training.FitResult:
    """Run ``num_steps`` outer iterations with :func:`tailjax.training.fit` (progress bar,
    checkpoint/resume). ``data`` is the whole nominal set; step i gets K minibatches."""
    _, step = kernel
    batch_fn = stacked_batches(data, batch_size, config.inner_steps, seed=fit_kwargs.pop("seed", 0))
    return training.fit(
        step,
        state,
        key,
        num_steps,
        batch_fn=batch_fn,
        checkpoint_path=checkpoint_path,
        description=fit_kwargs.pop("description", "GAS-DRO"),
        **fit_kwargs,
    )

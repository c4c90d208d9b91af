"""Training driver for Gen-DFL: :func:`fit_gen_dfl` runs :func:`~tailjax.dfl.gen_dfl_loss`
with Adam under :func:`tailjax.training.fit` (progress bar, periodic evaluation or
validation selection with early stopping, checkpoint/resume).

One compilation per (flow, static config). The step of :func:`fit_gen_dfl` is the
:func:`tailjax.training.gradient_kernel` step of a loss that reads the problem, the proxy
and the weights ``(regret_weight, nll_weight)`` from its batch
``((x, c, w_q), problem, proxy, weights)``, and the learning rate lives in the optimiser
state (``optax.inject_hyperparams``); so sweeps over the weights, the learning rate, seeds
and data sets of one shape reuse one compiled step. The loss and update are those of the
kernel :func:`~tailjax.dfl.gen_dfl`.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from jaxtyping import ArrayLike, Float

from tailjax._checks import check_positive
from tailjax.base import Kernel
from tailjax.dfl.gen_dfl import (
    GenDFLConfig,
    ProxyLike,
    check_config,
    check_context,
    gen_dfl,
    gen_dfl_loss,
    gen_dfl_mean_regret,
    proxy_decisions,
)
from tailjax.dfl.problems.base import DecisionProblem
from tailjax.dfl.proxy import check_finite_data, init_flow
from tailjax.nn.conditional_flow import ConditionalFlow
from tailjax.training import FitResult, fit, gradient_kernel, minibatches

__all__ = ["fit_gen_dfl"]


def fit_gen_dfl(
    key: jax.Array,
    flow: ConditionalFlow,
    problem: DecisionProblem,
    proxy: ProxyLike,
    x: Float[ArrayLike, "n p"],
    c: Float[ArrayLike, "n d"],
    *,
    num_steps: int = 500,
    config: GenDFLConfig = GenDFLConfig(),
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    params: Any = None,
    w_q: Float[ArrayLike, "n d"] | None = None,
    validation: Float[ArrayLike, "m p"] | None = None,
    patience: int | None = None,
    eval_fn: Callable[[Any], Any] | None = None,
    eval_every: int | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    run: Any = None,
    progress: bool = False,
) -> FitResult:
    """Train Gen-DFL on ``(x, c)`` with Adam; a thin wrapper over :func:`tailjax.training.fit`.

    Adam is wrapped in ``optax.apply_if_finite``: a step whose gradient is not finite (a
    degenerate LP instance) is skipped. For LPs prefer a QPTL regulariser in the training
    layer (``problem.reg > 0``). ``config.regret_weight``, ``config.nll_weight`` and the
    learning rate are traced: sweeps over them reuse one compiled step (module docstring).

    Args:
      key: PRNG key; ``(init, proxy decisions, minibatches, steps) = split(key, 4)``.
      flow: the conditional flow p_theta.
      problem: the decision problem.
      proxy: q(c | x), a pytree with ``sample(key, x: (p,), K) -> (K, d)``: a frozen
        :class:`~tailjax.dfl.Proxy` (or, for oracle studies, a true model).
      x, c: training features ``(n, p)`` and costs ``(n, d)``.
      num_steps: optimiser steps (minibatches of :func:`tailjax.training.minibatches`).
      config: :class:`~tailjax.dfl.GenDFLConfig` (K, tail_prob, regret_weight, ...).
      params: initial flow parameters (e.g. the NLL-trained flow: warm start); otherwise
        :func:`~tailjax.dfl.init_flow` (standardised to ``c``).
      w_q: precomputed decisions under q, ``(n, d)``; computed here otherwise (on
        ``config.reference_samples`` draws of q).
      validation: features ``(m, p)`` of a held-out split: the returned parameters are
        those (initial ones included) of lowest mean validation regret under q (fixed keys),
        checked every ``eval_every`` steps; ``patience`` stops after that many checks
        without improvement.
      eval_fn, eval_every, checkpoint_path, checkpoint_every, progress: see
        :func:`tailjax.training.fit` (the checkpoint header records ``config``, the
        learning rate and the batch size).
      run: a plain description of the data and settings (e.g. the problem and seed), also
        recorded in the checkpoint header: resuming refuses another run's checkpoint.
    """
    check_config(config)
    check_positive(learning_rate, "learning_rate", allow_zero=True)
    x, c = jnp.asarray(x), jnp.asarray(c)
    if x.ndim != 2 or c.ndim != 2 or x.shape[0] != c.shape[0] or x.shape[0] == 0:
        raise ValueError(f"x and c must have shapes (n, p) and (n, d) with n >= 1, got {x.shape} and {c.shape}")
    check_finite_data(x, c)
    check_context(flow, x)
    k_init, k_q, k_batch, k_fit = jax.random.split(key, 4)
    if params is None:
        params = init_flow(k_init, flow, x, c)
    if w_q is None:
        w_q = _proxy_decisions_jit(
            k_q, proxy, problem, x, tail_prob=config.tail_prob, num_samples=config.reference_samples
        )
    w_q = jnp.asarray(w_q)
    if w_q.shape != (x.shape[0], problem.dim):
        raise ValueError(f"w_q must have shape ({x.shape[0]}, d), got {w_q.shape}")
    static = _static(config)
    score = None
    if validation is not None:
        xv = jnp.asarray(validation)
        check_context(flow, xv, "validation")
        if xv.ndim != 2 or xv.shape[0] == 0:
            raise ValueError(f"validation must have shape (m, p) with m >= 1, got {xv.shape}")
        k_vq, k_v = jax.random.split(jax.random.fold_in(k_q, 1))
        wv = _proxy_decisions_jit(
            k_vq, proxy, problem, xv, tail_prob=config.tail_prob, num_samples=config.reference_samples
        )
        value = _validation_regret(flow, static)
        score = lambda state: value(state.params, k_v, xv, wv, problem, proxy)  # noqa: E731
    dtype = jnp.result_type(float)
    weights = (jnp.asarray(config.regret_weight, dtype), jnp.asarray(config.nll_weight, dtype))
    data = minibatches(k_batch, (x, c, w_q), batch_size)
    # the state of the public kernel at this learning rate; its step is the cached one's
    state = gen_dfl(flow, problem, proxy, config, _optimizer(float(learning_rate))).init(params)
    return fit(
        _sweep_kernel(flow, static), state, k_fit, num_steps,
        batches=lambda i: (data(i), problem, proxy, weights),
        eval_fn=eval_fn, eval_every=eval_every, validation=score, patience=patience,
        checkpoint_path=checkpoint_path, checkpoint_every=checkpoint_every,
        config=dict(method="gen_dfl", gen_dfl=config, learning_rate=float(learning_rate),
                    batch_size=int(batch_size), **({} if run is None else {"run": run})),
        progress=progress, description="Gen-DFL",
    )


def _static(config: GenDFLConfig) -> GenDFLConfig:
    """The part of a config that shapes the compiled step (the weights are traced)."""
    return config._replace(regret_weight=0.0, nll_weight=0.0)


def _optimizer(learning_rate):
    # Adam (learning rate as a traced hyper-parameter) that skips and counts updates with
    # non-finite gradients: an interior-point iterate of a degenerate LP instance can give an
    # infinite implicit gradient.
    adam = optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate)
    return optax.apply_if_finite(adam, max_consecutive_errors=20)


@functools.lru_cache(maxsize=64)
def _sweep_kernel(flow: ConditionalFlow, static: GenDFLConfig) -> Kernel:
    """gradient_kernel of gen_dfl_loss with the problem, proxy and weights in the batch."""

    def loss(params, batch, key):
        data, problem, proxy, (regret_weight, nll_weight) = batch
        config = static._replace(regret_weight=regret_weight, nll_weight=nll_weight)
        return gen_dfl_loss(params, data, key, flow=flow, problem=problem, proxy=proxy, config=config)

    return gradient_kernel(loss, _optimizer(1e-3))  # the rate read is the one in the state


@functools.lru_cache(maxsize=64)
def _validation_regret(flow: ConditionalFlow, static: GenDFLConfig):
    def value(params, key, x, w_q, problem, proxy):
        return gen_dfl_mean_regret(params, key, x, w_q, flow=flow, problem=problem, proxy=proxy,
                                   config=static)

    return jax.jit(value)


_proxy_decisions_jit = jax.jit(
    proxy_decisions, static_argnames=("tail_prob", "num_samples", "reg", "batch_size")
)

"""Training driver for Gen-DFL: :func:`fit_gen_dfl` runs the kernel of
:mod:`tailjax.dfl.gen_dfl` with Adam under :func:`tailjax.training.fit` (progress bar,
periodic evaluation or validation selection, checkpoint/resume), compiling one step per
(flow, static config) with the problem, proxy, data and the weights beta, gamma as
arguments.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from jaxtyping import ArrayLike, Float

from tailjax.dfl.gen_dfl import (
    GenDFLConfig,
    GenDFLInfo,
    GenDFLState,
    Proxy,
    _check_context,
    _regret_and_scale,
    check_config,
    gen_dfl_init,
    gen_dfl_loss,
    proxy_decisions,
)
from tailjax.dfl.problems.base import DecisionProblem
from tailjax.dfl.proxy import apply_optimizer, fit_selected, init_flow, minibatch_fn
from tailjax.nn.conditional_flow import ConditionalFlow
from tailjax.training import FitResult

__all__ = ["fit_gen_dfl"]


def fit_gen_dfl(
    key: jax.Array,
    flow: ConditionalFlow,
    problem: DecisionProblem,
    proxy: Proxy,
    x: Float[ArrayLike, "n p"],
    c: Float[ArrayLike, "n d"],
    *,
    config: GenDFLConfig = GenDFLConfig(),
    num_steps: int = 500,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    params: Any = None,
    w_q: Float[ArrayLike, "n d"] | None = None,
    validation: Float[ArrayLike, "m p"] | None = None,
    eval_fn: Callable[[GenDFLState], Any] | None = None,
    eval_every: int | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    progress: bool = False,
) -> FitResult:
    """Train Gen-DFL on ``(x, c)`` with Adam; a thin wrapper over :func:`tailjax.training.fit`.

    Adam is wrapped in ``optax.apply_if_finite``: a step whose gradient is not finite (a
    degenerate LP instance) is skipped. For LPs prefer a QPTL regulariser in the training
    layer (``problem.reg > 0``). One step function is compiled per (flow, K, alpha, ...):
    ``beta``, ``gamma`` and the learning rate are traced, so sweeps over them, seeds and
    data sets of one shape reuse it.

    Args:
      key: PRNG key (init, proxy decisions, minibatches, steps).
      flow: the conditional flow p_theta.
      problem: the decision problem.
      proxy: q(c | x), a pytree with ``sample(key, x: (p,), K) -> (K, d)``: a frozen
        :class:`~tailjax.dfl.proxy.Proxy` (or, for oracle studies, a true model).
      x, c: training features ``(n, p)`` and costs ``(n, d)``.
      config: :class:`GenDFLConfig` (K, alpha, beta, gamma, ...).
      params: initial flow parameters (e.g. the NLL-trained flow: warm start); otherwise
        :func:`~tailjax.dfl.proxy.init_flow` (standardised to ``c``).
      w_q: precomputed decisions under q, ``(n, d)``; computed here otherwise.
      validation: features ``(m, p)`` of a held-out split: the returned parameters are
        those (initial ones included) of lowest mean validation regret under q (fixed
        keys), checked every ``eval_every`` steps (:func:`~tailjax.dfl.proxy.fit_selected`).
      eval_fn, eval_every, checkpoint_path, checkpoint_every, progress: see :func:`fit`.
    """
    check_config(config)
    x, c = jnp.asarray(x), jnp.asarray(c)
    if x.ndim != 2 or c.ndim != 2 or x.shape[0] != c.shape[0]:
        raise ValueError(f"x and c must have shapes (n, p) and (n, d), got {x.shape} and {c.shape}")
    _check_context(flow, x)
    k_init, k_q, k_batch, k_fit = jax.random.split(key, 4)
    if params is None:
        params = init_flow(k_init, flow, x, c)
    if w_q is None:
        w_q = _proxy_decisions_jit(
            k_q, proxy, problem, x, alpha=config.alpha, num_samples=config.reference_samples
        )
    w_q = jnp.asarray(w_q)
    if w_q.shape != (x.shape[0], problem.dim):
        raise ValueError(f"w_q must have shape ({x.shape[0]}, d), got {w_q.shape}")
    score_fn = None
    if validation is not None:
        xv = jnp.asarray(validation)
        _check_context(flow, xv, "validation")
        if xv.ndim != 2 or xv.shape[0] == 0:
            raise ValueError(f"validation must have shape (m, p) with m >= 1, got {xv.shape}")
        k_vq, k_v = jax.random.split(jax.random.fold_in(k_q, 1))
        wv = _proxy_decisions_jit(
            k_vq, proxy, problem, xv, alpha=config.alpha, num_samples=config.reference_samples
        )
        value = _validation_regret(flow, _static(config))
        score_fn = lambda p: float(value(p, k_v, xv, wv, problem, proxy))  # noqa: E731
    step = _gen_dfl_step(flow, _static(config))
    dtype = jnp.result_type(float)
    weights = (jnp.asarray(config.beta, dtype), jnp.asarray(config.gamma, dtype))
    return fit_selected(
        lambda state, k, batch: step(state, k, batch, problem, proxy, weights),
        gen_dfl_init(params, _optimizer(float(learning_rate))),
        k_fit,
        num_steps,
        batch_fn=minibatch_fn(k_batch, (x, c, w_q), batch_size),
        score_fn=score_fn,
        eval_fn=eval_fn,
        eval_every=eval_every,
        checkpoint_path=checkpoint_path,
        checkpoint_every=checkpoint_every,
        progress=progress,
        description="Gen-DFL",
    )


def _static(config: GenDFLConfig) -> GenDFLConfig:
    """The part of a config that shapes the compiled step (beta, gamma are traced)."""
    return config._replace(beta=0.0, gamma=0.0)


def _optimizer(learning_rate):
    # Adam (learning rate as a traced hyper-parameter) that skips and counts updates with
    # non-finite gradients: an interior-point iterate of a degenerate LP instance can give an
    # infinite implicit gradient.
    adam = optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate)
    return optax.apply_if_finite(adam, max_consecutive_errors=20)


@functools.lru_cache(maxsize=64)
def _gen_dfl_step(flow, config):
    optimizer = _optimizer(1e-3)  # the rate lives in the optimiser state

    def step(state, key, batch, problem, proxy, weights):
        cfg = config._replace(beta=weights[0], gamma=weights[1])
        loss_fn = lambda p: gen_dfl_loss(  # noqa: E731
            p, batch, key, flow=flow, problem=problem, proxy=proxy, config=cfg
        )
        (loss, (regret, nll)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        params, opt_state = apply_optimizer(optimizer, grads, state.opt_state, state.params)
        info = GenDFLInfo(loss, regret, nll, optax.global_norm(grads))
        return GenDFLState(params, opt_state, state.step + 1), info

    return jax.jit(step)


@functools.lru_cache(maxsize=64)
def _validation_regret(flow, config):
    def value(params, key, x, w_q, problem, proxy):
        keys = jax.random.split(key, x.shape[0])
        regrets, scales = jax.vmap(
            lambda k, xi, wi: _regret_and_scale(
                params, k, xi, wi, flow=flow, problem=problem, proxy=proxy, config=config
            )
        )(keys, x, w_q)
        out = jnp.mean(regrets)
        return out / jnp.mean(scales) if config.normalize else out

    return jax.jit(value)


_proxy_decisions_jit = jax.jit(proxy_decisions, static_argnames=("alpha", "num_samples", "reg", "batch_size"))

"""Gen-DFL: decision-focused generative learning (Wang et al., Algorithm 1, eq. (7)).

A conditional flow p_theta(c | x) (:class:`tailjax.nn.ConditionalFlow`) is trained so that
the decision it induces is good, not only its likelihood. For one feature vector x
(generate-then-optimize):

1. draw K reparameterised samples c_1..c_K ~ p_theta(c | x);
2. solve the CVaR-SAA decision w*_theta = argmin_w CVaR_a[f(c, w)] on them, a = ``tail_prob``
   (the paper's alpha), with :func:`tailjax.dfl.problems.decision` (implicit
   differentiation in the samples);
3. draw samples from the proxy q(c | x) (a frozen flow trained by NLL, :mod:`tailjax.dfl.proxy`;
   any pytree with ``sample(key, x, K) -> (K, d)`` works, e.g. a problem's true model)
   and compute the regret  Regret_{theta,q}(x) = CVaR_q[f(c, w*_theta) - f(c, w*_q); a],
   with w*_q the decision under q, precomputed once per x and held fixed.

The loss is ``regret_weight * E_x[Regret] + nll_weight * NLL(theta)`` (the paper's beta and
gamma: 10 and 1), written for one x and ``vmap``-ed over the batch. The *training*
``GenDFLConfig.tail_prob`` is independent of the level at which decisions are evaluated
(``gen_dfl_decisions(..., tail_prob)``).

Kernel (one step of Adam or any optax optimiser, :func:`tailjax.training.gradient_kernel`)::

    kernel = gen_dfl(flow, problem, proxy, config, optimizer)
    state = kernel.init(params)                                # a TrainState
    state, info = kernel.step(state, key, (x, c, w_q))         # (B, p), (B, d), (B, d)
    info.loss, info.aux.regret, info.aux.nll

and :func:`tailjax.dfl.fit_gen_dfl` trains it under :func:`tailjax.training.fit`.
``config.importance=True`` replaces steps 1-2 by the importance-sampled decision of
:mod:`tailjax.dfl.gen_dfl_is`.

What the regret term can teach. Warm-started from the NLL flow that is also the proxy q, the
regret at the start is only the K-sample SAA error of q against its own decision w*_q: its
gradient moves p_theta towards decisions that are good *under q*, not under the truth, and
the only truth-facing signal is the NLL term. Gen-DFL then improves on the NLL flow only as
far as q is better than p_theta's own fit (a larger or longer-trained q, more data). With an
informative q (an oracle study with q = the true p(c|x)) the same training lowers the true
regret (``benchmarks/seeds/gen_dfl.py``, method ``gen_dfl_true_q``).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import (
    check_int, check_open_unit, check_positive, nan_where, traced_below_zero, traced_out_of_range,
)
from tailjax.base import Kernel
from tailjax.dfl.gen_dfl_is import check_num_samples, is_decision
from tailjax.dfl.problems.base import DecisionProblem, decision, objective
from tailjax.nn.conditional_flow import ConditionalFlow
from tailjax.risk import cvar
from tailjax.training import gradient_kernel

__all__ = [
    "GenDFLConfig",
    "GenDFLAux",
    "check_config",
    "check_context",
    "sample_decision",
    "gen_dfl_regret",
    "gen_dfl_mean_regret",
    "gen_dfl_loss",
    "gen_dfl",
    "proxy_decisions",
    "gen_dfl_decisions",
]

ProxyLike = Any  # a pytree with ``sample(key, x: (p,), K) -> (K, d)``, e.g. tailjax.dfl.Proxy


class GenDFLConfig(NamedTuple):
    """Options of the Gen-DFL loss.

    Attributes:
      num_samples: K, generated samples per x for the decision.
      proxy_samples: samples of q(c | x) per x for the regret's CVaR.
      tail_prob: the paper's alpha, the training CVaR level in (0, 1] (worst fraction).
      regret_weight: the paper's beta, weight of the regret (paper: 10).
      nll_weight: the paper's gamma, weight of the negative log-likelihood (paper: 1).
      importance: use the importance-sampled decision (:mod:`tailjax.dfl.gen_dfl_is`).
      pilot_samples: pilot samples of the importance-sampled decision.
      iterations: interior-point iterations of the decision layer.
      reference_samples: samples of q for the fixed decision w*_q (computed once per x by
        :func:`~tailjax.dfl.fit_gen_dfl`; more samples than ``proxy_samples`` make it closer
        to the exact CVaR-optimal decision under q).
      normalize: divide the batch's mean regret by the batch's mean |E_q f(c, w*_q)| (the
        normalisation of eq. (9)), so that ``regret_weight`` does not depend on the cost's
        units. Off by default (the paper's loss).
    """

    num_samples: int = 32
    proxy_samples: int = 64
    tail_prob: float = 0.1
    regret_weight: float = 10.0
    nll_weight: float = 1.0
    importance: bool = False
    pilot_samples: int = 16
    iterations: int = 40
    reference_samples: int = 256
    normalize: bool = False


class GenDFLAux(NamedTuple):
    """What :func:`gen_dfl_loss` reports besides the loss (``info.aux`` of a step)."""

    regret: Array  # the batch's regret term (normalised with ``config.normalize``)
    nll: Array  # the batch's mean negative log-likelihood


def check_config(config: GenDFLConfig) -> GenDFLConfig:
    """Validate a :class:`GenDFLConfig`; ``ValueError`` naming the field."""
    check_num_samples(config.num_samples, "num_samples")
    check_num_samples(config.proxy_samples, "proxy_samples")
    check_num_samples(config.pilot_samples, "pilot_samples")
    check_num_samples(config.reference_samples, "reference_samples")
    check_open_unit(config.tail_prob, "tail_prob", closed_right=True)
    check_positive(config.regret_weight, "regret_weight", allow_zero=True)
    check_positive(config.nll_weight, "nll_weight", allow_zero=True)
    return config


def check_context(flow: ConditionalFlow, x: ArrayLike, name: str = "x") -> None:
    """``ValueError`` naming ``name`` unless the last axis of ``x`` is the flow's context."""
    if jnp.shape(x)[-1:] != (flow.context_dim,):
        raise ValueError(
            f"{name} must have last axis context_dim={flow.context_dim}, got shape {jnp.shape(x)}"
        )


def sample_decision(
    key: jax.Array,
    flow: ConditionalFlow,
    params: Any,
    problem: DecisionProblem,
    x: Float[ArrayLike, " p"],
    tail_prob: float,
    num_samples: int,
    *,
    importance: bool = False,
    pilot_samples: int = 16,
    reg: float | None = None,
    iterations: int = 40,
) -> Float[Array, " d"]:
    """w*_theta(x): the CVaR-SAA decision on K samples of p_theta(c | x), one x ``(p,)``.

    ``tail_prob``: the paper's alpha in (0, 1]. Differentiable in ``params``
    (reparameterised samples + implicit differentiation). ``reg``: QPTL regulariser (None:
    ``problem.reg``, the training layer's).
    """
    check_open_unit(tail_prob, "tail_prob", closed_right=True)
    num_samples = check_num_samples(num_samples)
    check_context(flow, x)
    if jnp.ndim(x) != 1:
        raise ValueError(f"x must be one feature vector (p,) (vmap over rows), got shape {jnp.shape(x)}")
    if importance:
        return is_decision(
            key, flow, params, problem, x, tail_prob, num_samples,
            pilot_samples=pilot_samples, reg=reg, iterations=iterations,
        )
    samples = flow.apply(params, key, x, num_samples, method=ConditionalFlow.sample)
    return decision(problem, samples, tail_prob, reg=reg, iterations=iterations)


def _regret_and_scale(params, key, x, w_q, *, flow, problem, proxy, config):
    """Regret_{theta,q}(x) and |E_q f(c, w*_q)| for one x."""
    k_gen, k_q = jax.random.split(key)
    w = sample_decision(
        k_gen, flow, params, problem, x, config.tail_prob, config.num_samples,
        importance=config.importance, pilot_samples=config.pilot_samples,
        iterations=config.iterations,
    )
    c_q = jax.lax.stop_gradient(proxy.sample(k_q, x, config.proxy_samples))
    f_q = objective(problem, c_q, jnp.asarray(w_q).astype(c_q.dtype))
    return cvar(objective(problem, c_q, w) - f_q, config.tail_prob), jnp.abs(jnp.mean(f_q))


def gen_dfl_regret(
    params: Any,
    key: jax.Array,
    x: Float[ArrayLike, " p"],
    w_q: Float[ArrayLike, " d"],
    *,
    flow: ConditionalFlow,
    problem: DecisionProblem,
    proxy: ProxyLike,
    config: GenDFLConfig,
) -> Float[Array, ""]:
    """Regret_{theta,q}(x) = CVaR_q[f(c, w*_theta) - f(c, w*_q); tail_prob] for one x
    (``config`` is checked, :func:`check_config`)."""
    check_config(config)
    return _regret_and_scale(
        params, key, x, w_q, flow=flow, problem=problem, proxy=proxy, config=config
    )[0]


def gen_dfl_mean_regret(
    params: Any,
    key: jax.Array,
    x: Float[ArrayLike, "B p"],
    w_q: Float[ArrayLike, "B d"],
    *,
    flow: ConditionalFlow,
    problem: DecisionProblem,
    proxy: ProxyLike,
    config: GenDFLConfig,
) -> Float[Array, ""]:
    """The regret term of the loss: mean_x Regret over ``x: (B, p)`` with decisions under q
    ``w_q: (B, d)``; with ``config.normalize`` divided by mean_x |E_q f(c, w*_q)|.

    Row ``i`` uses the key ``split(key, B)[i]``. ``config`` is checked (:func:`check_config`).
    """
    check_config(config)
    x = jnp.asarray(x)
    check_context(flow, x)
    _check_rows(x)
    keys = jax.random.split(key, x.shape[0])
    regret_one = lambda k, xi, wi: _regret_and_scale(  # noqa: E731
        params, k, xi, wi, flow=flow, problem=problem, proxy=proxy, config=config
    )
    regrets, scales = jax.vmap(regret_one)(keys, x, jnp.asarray(w_q))
    regret = jnp.mean(regrets)
    if config.normalize:
        regret = regret / jnp.maximum(jnp.mean(scales), jnp.finfo(regret.dtype).tiny)
    return regret


def gen_dfl_loss(
    params: Any,
    batch: tuple[Array, Array, Array],
    key: jax.Array,
    *,
    flow: ConditionalFlow,
    problem: DecisionProblem,
    proxy: ProxyLike,
    config: GenDFLConfig,
) -> tuple[Float[Array, ""], GenDFLAux]:
    """``regret_weight * mean_x Regret + nll_weight * NLL`` on a batch
    ``(x: (B, p), c: (B, d), w_q: (B, d))``; returns ``(loss, GenDFLAux(regret, nll))``.

    The regret term is :func:`gen_dfl_mean_regret` (normalised with ``config.normalize``).
    ``config.regret_weight`` and ``config.nll_weight`` may be traced scalars; traced ones
    (or a traced ``tail_prob``) out of range, or a NaN in ``c``, make loss and aux NaN.
    """
    x, c, w_q = batch
    regret = gen_dfl_mean_regret(
        params, key, x, w_q, flow=flow, problem=problem, proxy=proxy, config=config
    )
    nll = -jnp.mean(flow.apply(params, c, x, method=ConditionalFlow.log_prob))
    dtype = regret.dtype
    loss = (jnp.asarray(config.regret_weight, dtype) * regret
            + jnp.asarray(config.nll_weight, dtype) * nll)
    invalid = (traced_out_of_range(config.tail_prob, high_closed=True)
               | traced_below_zero(config.regret_weight) | traced_below_zero(config.nll_weight)
               | jnp.any(jnp.isnan(jnp.asarray(c))))
    return nan_where(invalid, (loss, GenDFLAux(regret, nll)))


def gen_dfl(
    flow: ConditionalFlow,
    problem: DecisionProblem,
    proxy: ProxyLike,
    config: GenDFLConfig,
    optimizer: optax.GradientTransformation,
) -> Kernel:
    """The Gen-DFL kernel: ``init(params) -> TrainState`` and
    ``step(state, key, (x, c, w_q)) -> (TrainState, GradientInfo)`` with ``info.aux`` a
    :class:`GenDFLAux`; :func:`gen_dfl_loss` under :func:`tailjax.training.gradient_kernel`.
    """
    check_config(config)
    loss = functools.partial(gen_dfl_loss, flow=flow, problem=problem, proxy=proxy, config=config)
    return gradient_kernel(loss, optimizer)


def _check_rows(x):
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"x must have shape (n, p) with n >= 1, got {x.shape}")


def _map_rows(fn, xs, batch_size):
    """``fn`` over the rows of the pytree ``xs``, ``batch_size`` rows per vmapped call.

    The rows are padded (with copies of the last) to a whole number of batches, so one
    batched body is compiled and run (``lax.map`` adds a second vmapped computation for a
    remainder). ``batch_size=None``: all rows in one vmap.
    """
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size", minimum=1)
    n = jax.tree.leaves(xs)[0].shape[0]
    if batch_size is None or n <= batch_size:
        return jax.vmap(fn)(xs)
    pad = -n % batch_size
    padded = jax.tree.map(lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)]), xs)
    out = jax.lax.map(fn, padded, batch_size=batch_size)
    return jax.tree.map(lambda a: a[:n], out)


def proxy_decisions(
    key: jax.Array,
    proxy: ProxyLike,
    problem: DecisionProblem,
    x: Float[ArrayLike, "n p"],
    tail_prob: float,
    num_samples: int,
    *,
    reg: float = 0.0,
    batch_size: int | None = 64,
) -> Float[Array, "n d"]:
    """w*_q(x) for every row of ``x``: CVaR-SAA decisions at ``tail_prob`` (the paper's
    alpha) on ``num_samples`` draws of q.

    ``reg`` defaults to 0 (the unregularised decision under q); ``batch_size`` rows are
    solved per vmapped call, None solves all at once.
    """
    check_open_unit(tail_prob, "tail_prob", closed_right=True)
    num_samples = check_num_samples(num_samples)
    x = jnp.asarray(x)
    _check_rows(x)
    keys = jax.random.split(key, x.shape[0])

    def one(args):
        k, xi = args
        samples = jax.lax.stop_gradient(proxy.sample(k, xi, num_samples))
        return decision(problem, samples, tail_prob, reg=reg)

    return _map_rows(one, (keys, x), batch_size)


def gen_dfl_decisions(
    key: jax.Array,
    flow: ConditionalFlow,
    params: Any,
    problem: DecisionProblem,
    x: Float[ArrayLike, "n p"],
    tail_prob: float,
    num_samples: int,
    *,
    importance: bool = False,
    pilot_samples: int = 16,
    reg: float = 0.0,
    batch_size: int | None = 64,
) -> Float[Array, "n d"]:
    """Gen-DFL's decisions at evaluation level ``tail_prob`` (the paper's alpha) for every
    row of ``x: (n, p)``.

    Evaluation decisions are unregularised by default (``reg=0``); ``batch_size`` rows per
    vmapped call, None all at once.
    """
    x = jnp.asarray(x)
    check_context(flow, x)
    _check_rows(x)
    keys = jax.random.split(key, x.shape[0])

    def one(args):
        k, xi = args
        return sample_decision(
            k, flow, params, problem, xi, tail_prob, num_samples,
            importance=importance, pilot_samples=pilot_samples, reg=reg,
        )

    return _map_rows(one, (keys, x), batch_size)

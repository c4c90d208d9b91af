"""Gen-DFL: decision-focused generative learning (Wang et al., Algorithm 1, eq. (7)).

A conditional flow p_theta(c | x) (:class:`tailjax.nn.conditional_flow.ConditionalFlow`)
is trained so that the decision it induces is good, not only its likelihood. For one
feature vector x (generate-then-optimize):

1. draw K reparameterised samples c_1..c_K ~ p_theta(c | x);
2. solve the CVaR-SAA decision w*_theta = argmin_w CVaR_alpha[f(c, w)] on them with
   :func:`tailjax.dfl.problems.base.decision` (implicit differentiation in the samples);
3. draw samples from the proxy q(c | x) (a frozen flow trained by NLL, :mod:`tailjax.dfl.proxy`;
   any pytree with ``sample(key, x, K) -> (K, d)`` works, e.g. a problem's true model)
   and compute the regret  Regret_{theta,q}(x; alpha) = CVaR_{q(c|x)}[f(c, w*_theta) - f(c, w*_q); alpha],
   with w*_q the decision under q, precomputed once per x and held fixed.

The loss is ``beta * E_x[Regret] + gamma * NLL(theta)`` (the paper: gamma = 1, beta = 10),
written for one x and ``vmap``-ed over the batch; the whole step is one jitted function.
Gen-DFL's alpha is the worst alpha-fraction, i.e. the library's ``tail_prob``; the
*training* alpha (``GenDFLConfig.alpha``) is independent of the alpha at which decisions are
evaluated (``gen_dfl_decisions(..., alpha=...)``).

Kernel (blackjax pattern)::

    step = build_gen_dfl_kernel(flow, problem, proxy, config, optimizer)
    state = gen_dfl_init(params, optimizer)
    state, info = step(state, key, (x, c, w_q))       # batch: (B, p), (B, d), (B, d)

and :func:`tailjax.dfl.gen_dfl_fit.fit_gen_dfl` drives it with :func:`tailjax.training.fit`
(progress bar, periodic evaluation, checkpoint/resume). ``config.importance=True`` replaces
steps 1-2 by the importance-sampled decision of :mod:`tailjax.dfl.gen_dfl_is`.

What the regret term can teach. Warm-started from the NLL flow that is also the proxy q, the
regret at the start is only the K-sample SAA error of q against its own decision w*_q: its
gradient moves p_theta towards decisions that are good *under q*, not under the truth, and
the only truth-facing signal is the NLL term. Gen-DFL then improves on the NLL flow only as
far as q is better than p_theta's own fit (a larger or longer-trained q, more data). With an
informative q (an oracle study with q = the true p(c|x)) the same training lowers the true
regret (``benchmarks/seeds/gen_dfl.py``, method ``gen_dfl_true_q``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import check_open_unit, check_positive
from tailjax.dfl.gen_dfl_is import check_num_samples, is_decision
from tailjax.dfl.problems.base import DecisionProblem, decision, objective
from tailjax.dfl.proxy import apply_optimizer
from tailjax.nn.conditional_flow import ConditionalFlow
from tailjax.risk import cvar

__all__ = [
    "GenDFLConfig",
    "GenDFLState",
    "GenDFLInfo",
    "check_config",
    "sample_decision",
    "gen_dfl_regret",
    "gen_dfl_loss",
    "gen_dfl_init",
    "build_gen_dfl_kernel",
    "proxy_decisions",
    "gen_dfl_decisions",
]

Proxy = Any  # a pytree with ``sample(key, x: (p,), K) -> (K, d)`` (tailjax.dfl.proxy.Proxy)


class GenDFLConfig(NamedTuple):
    """Static options of the Gen-DFL loss.

    num_samples: K, generated samples per x for the decision.
    proxy_samples: samples of q(c | x) per x for the regret's CVaR (and for w*_q).
    alpha: training CVaR level in (0, 1] (worst alpha-fraction; = tail_prob).
    beta, gamma: weights of the regret and of the NLL (paper: 10 and 1).
    importance: use the importance-sampled decision (:mod:`tailjax.dfl.gen_dfl_is`).
    pilot_samples: pilot samples of the importance-sampled decision.
    iterations: interior-point iterations of the decision layer.
    reference_samples: samples of q for the fixed decision w*_q (computed once per x by
      :func:`~tailjax.dfl.gen_dfl_fit.fit_gen_dfl`; more samples than ``proxy_samples`` make it closer to the exact
      CVaR-optimal decision under q).
    normalize: divide the batch's mean regret by the batch's mean |E_q f(c, w*_q)| (the
      normalisation of eq. (9)), so that ``beta`` does not depend on the cost's units. Off
      by default (the paper's loss); see the module docstring for when to use it.
    """

    num_samples: int = 32
    proxy_samples: int = 64
    alpha: float = 0.1
    beta: float = 10.0
    gamma: float = 1.0
    importance: bool = False
    pilot_samples: int = 16
    iterations: int = 40
    reference_samples: int = 256
    normalize: bool = False


def check_config(config: GenDFLConfig) -> GenDFLConfig:
    """Validate a :class:`GenDFLConfig`; ``ValueError`` naming the field."""
    check_num_samples(config.num_samples, "num_samples")
    check_num_samples(config.proxy_samples, "proxy_samples")
    check_num_samples(config.pilot_samples, "pilot_samples")
    check_num_samples(config.reference_samples, "reference_samples")
    check_open_unit(config.alpha, "alpha", closed_right=True)
    check_positive(config.beta, "beta", allow_zero=True)
    check_positive(config.gamma, "gamma", allow_zero=True)
    return config


def _check_context(flow: ConditionalFlow, x: Array, name: str = "x") -> None:
    if jnp.shape(x)[-1:] != (flow.context_dim,):
        raise ValueError(
            f"{name} must have last axis context_dim={flow.context_dim}, got shape {jnp.shape(x)}"
        )


class GenDFLState(NamedTuple):
    params: Any
    opt_state: Any
    step: Array


class GenDFLInfo(NamedTuple):
    loss: Array
    regret: Array  # batch mean of Regret_{theta,q}(x; alpha)
    nll: Array
    grad_norm: Array


def sample_decision(
    key: jax.Array,
    flow: ConditionalFlow,
    params: Any,
    problem: DecisionProblem,
    x: Float[ArrayLike, " p"],
    alpha: float,
    num_samples: int,
    *,
    importance: bool = False,
    pilot_samples: int = 16,
    reg: float | None = None,
    iterations: int = 40,
) -> Float[Array, " d"]:
    """w*_theta(x): the CVaR-SAA decision on K samples of p_theta(c | x), one x ``(p,)``.

    Differentiable in ``params`` (reparameterised samples + implicit differentiation).
    ``reg``: QPTL regulariser (None: ``problem.reg``, the training layer's).
    """
    check_open_unit(alpha, "alpha", closed_right=True)
    num_samples = check_num_samples(num_samples)
    _check_context(flow, x)
    if importance:
        return is_decision(
            key, flow, params, problem, x, alpha, num_samples,
            pilot_samples=pilot_samples, reg=reg, iterations=iterations,
        )
    samples = flow.apply(params, key, x, num_samples, method=ConditionalFlow.sample)
    return decision(problem, samples, alpha, reg=reg, iterations=iterations)


def _regret_and_scale(params, key, x, w_q, *, flow, problem, proxy, config):
    k_gen, k_q = jax.random.split(key)
    w = sample_decision(
        k_gen, flow, params, problem, x, config.alpha, config.num_samples,
        importance=config.importance, pilot_samples=config.pilot_samples,
        iterations=config.iterations,
    )
    c_q = jax.lax.stop_gradient(proxy.sample(k_q, x, config.proxy_samples))
    f_q = objective(problem, c_q, jnp.asarray(w_q).astype(c_q.dtype))
    return cvar(objective(problem, c_q, w) - f_q, config.alpha), jnp.abs(jnp.mean(f_q))


def gen_dfl_regret(
    params: Any,
    key: jax.Array,
    x: Float[ArrayLike, " p"],
    w_q: Float[ArrayLike, " d"],
    *,
    flow: ConditionalFlow,
    problem: DecisionProblem,
    proxy: Proxy,
    config: GenDFLConfig,
) -> Float[Array, ""]:
    """Regret_{theta,q}(x; alpha) = CVaR_q[f(c, w*_theta) - f(c, w*_q); alpha] for one x."""
    return _regret_and_scale(
        params, key, x, w_q, flow=flow, problem=problem, proxy=proxy, config=config
    )[0]


def gen_dfl_loss(
    params: Any,
    batch: tuple[Array, Array, Array],
    key: jax.Array,
    *,
    flow: ConditionalFlow,
    problem: DecisionProblem,
    proxy: Proxy,
    config: GenDFLConfig,
) -> tuple[Float[Array, ""], tuple[Array, Array]]:
    """``beta * mean_x Regret + gamma * NLL`` on a batch ``(x: (B, p), c: (B, d), w_q: (B, d))``.

    With ``config.normalize`` the regret term is ``mean_x Regret / mean_x |E_q f(c, w*_q)|``.
    ``config.beta`` and ``config.gamma`` may be traced scalars. Returns
    ``(loss, (regret, nll))`` with ``regret`` the (normalised, if so configured) batch term.
    """
    x, c, w_q = batch
    _check_context(flow, x)
    keys = jax.random.split(key, x.shape[0])
    regret_one = lambda k, xi, wi: _regret_and_scale(
        params, k, xi, wi, flow=flow, problem=problem, proxy=proxy, config=config
    )
    regrets, scales = jax.vmap(regret_one)(keys, x, w_q)
    regret = jnp.mean(regrets)
    if config.normalize:
        regret = regret / jnp.maximum(jnp.mean(scales), jnp.finfo(regret.dtype).tiny)
    nll = -jnp.mean(flow.apply(params, c, x, method=ConditionalFlow.log_prob))
    dtype = regret.dtype
    loss = jnp.asarray(config.beta, dtype) * regret + jnp.asarray(config.gamma, dtype) * nll
    return loss, (regret, nll)


def gen_dfl_init(params: Any, optimizer: optax.GradientTransformation) -> GenDFLState:
    """Initial state of the Gen-DFL kernel."""
    return GenDFLState(params, optimizer.init(params), jnp.zeros((), jnp.int32))


def build_gen_dfl_kernel(
    flow: ConditionalFlow,
    problem: DecisionProblem,
    proxy: Proxy,
    config: GenDFLConfig,
    optimizer: optax.GradientTransformation,
):
    """Pure ``step(state, key, batch) -> (state, GenDFLInfo)``; batch ``(x, c, w_q)``."""
    check_config(config)

    def step(state: GenDFLState, key: jax.Array, batch):
        loss_fn = lambda p: gen_dfl_loss(
            p, batch, key, flow=flow, problem=problem, proxy=proxy, config=config
        )
        (loss, (regret, nll)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        params, opt_state = apply_optimizer(optimizer, grads, state.opt_state, state.params)
        info = GenDFLInfo(loss, regret, nll, optax.global_norm(grads))
        return GenDFLState(params, opt_state, state.step + 1), info

    return step


def _map_rows(fn, xs, batch_size):
    """``fn`` over the rows of the pytree ``xs``, ``batch_size`` rows per vmapped call.

    The rows are padded (with copies of the last) to a whole number of batches, so one
    batched body is compiled and run (``lax.map`` adds a second vmapped computation for a
    remainder). ``batch_size=None``: all rows in one vmap.
    """
    n = jax.tree.leaves(xs)[0].shape[0]
    if batch_size is None or n <= batch_size:
        return jax.vmap(fn)(xs)
    pad = -n % batch_size
    padded = jax.tree.map(lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)]), xs)
    out = jax.lax.map(fn, padded, batch_size=batch_size)
    return jax.tree.map(lambda a: a[:n], out)


def proxy_decisions(
    key: jax.Array,
    proxy: Proxy,
    problem: DecisionProblem,
    x: Float[ArrayLike, "n p"],
    alpha: float,
    num_samples: int,
    *,
    reg: float = 0.0,
    batch_size: int | None = 64,
) -> Float[Array, "n d"]:
    """w*_q(x) for every row of ``x``: CVaR-SAA decisions on ``num_samples`` draws of q.

    ``reg`` defaults to 0 (the unregularised decision under q); ``batch_size`` rows are
    solved per vmapped call, None solves all at once.
    """
    check_open_unit(alpha, "alpha", closed_right=True)
    num_samples = check_num_samples(num_samples)
    x = jnp.asarray(x)
    keys = jax.random.split(key, x.shape[0])

    def one(args):
        k, xi = args
        return decision(problem, jax.lax.stop_gradient(proxy.sample(k, xi, num_samples)), alpha, reg=reg)

    return _map_rows(one, (keys, x), batch_size)


def gen_dfl_decisions(
    key: jax.Array,
    flow: ConditionalFlow,
    params: Any,
    problem: DecisionProblem,
    x: Float[ArrayLike, "n p"],
    alpha: float,
    num_samples: int,
    *,
    importance: bool = False,
    pilot_samples: int = 16,
    reg: float = 0.0,
    batch_size: int | None = 64,
) -> Float[Array, "n d"]:
    """Gen-DFL's decisions at evaluation level ``alpha`` for every row of ``x: (n, p)``.

    Evaluation decisions are unregularised by default (``reg=0``); ``batch_size`` rows per
    vmapped call, None all at once.
    """
    x = jnp.asarray(x)
    _check_context(flow, x)
    keys = jax.random.split(key, x.shape[0])

    def one(args):
        k, xi = args
        return sample_decision(
            k, flow, params, problem, xi, alpha, num_samples,
            importance=importance, pilot_samples=pilot_samples, reg=reg,
        )

    return _map_rows(one, (keys, x), batch_size)

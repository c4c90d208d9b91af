"""TFFT's Stage 1: the threshold t* from offline samples, plain or importance-sampled.

Names as in :mod:`tailjax.flows.tfft`: ``quantile_level`` is the paper's beta,
``temperature`` its alpha, ``side`` is ``"upper"`` (right-CVaR) or ``"lower"`` (left-CVaR).

F_R averages exp([r - t]_+ / (alpha (1 - beta))): when the tilted target's mass sits where
the pre-trained samples never land, N plain samples under-estimate t* badly. Two remedies:
weights for samples of a proposal (``log_weight_fn`` of :func:`tfft_threshold`), and the
stratified sample of :func:`tfft_stratified_threshold` (pre-trained samples for the bulk, a
tail proposal with path weights beyond their upper quantile).

Diagnostics. The offline sample represents the target p* by the tilt weights
w_i proportional to w0_i exp(r*_i / alpha) (w0: importance weights, if any). Every threshold
carries their largest normalised weight and the effective number of samples in the target's
tail, n_tail = (sum_tail w)^2 / sum_tail w^2 over the samples beyond t* (above it upper,
below it lower): the tail of p* is what the pseudo-reward acts on, so a handful of samples
there means t* is not resolved (on TFFT's Table 4 R-TFFT, 10^4 prior samples give n_tail of
a few and a largest weight near 0.1). ``t_star_se`` is a bootstrap standard error of t*.

Notes on the paper's theory (checked in ``tests/flows/test_theory.py``). With q(t) the tilted
mass beyond t and p_r the density of the reward,

    F_R''(t) = q (1 - q) / (alpha (1 - beta)^2) + p_r(t) / ((1 - beta) M_R(t))   >= 0,
    F_L''(t) = q (1 - q) / (alpha beta^2) - p_r(t) / (beta M_L(t)),

with M the expectation inside the logarithm. So F_R is convex but F_L is not concave in
general: the paper's Theorem 5.1 omits the +Var/(alpha beta^2) term (a bimodal reward gives
two local maxima of F_L at alpha = 3, beta = 0.2) and its smoothness constants are too small
for both objectives. Theorem 6.2's left-tail bound has alpha (1 - beta) where alpha beta
belongs. :func:`~tailjax.risk.solve_threshold` searches F_L globally for this reason.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import check_int, check_open_unit, check_positive, check_side, nan_where, traced_out_of_range
from tailjax.flows.finetune import check_reward_values
from tailjax.risk.threshold import ThresholdInfo, pseudo_reward, solve_threshold

__all__ = ["TFFTThreshold", "tfft_threshold", "tfft_stratified_threshold", "tilt_diagnostics", "check_tfft"]


def check_tfft(quantile_level: float, temperature: float, side: str) -> None:
    """Raise ``ValueError`` naming the argument unless beta is in (0, 1), alpha > 0 and the side known."""
    check_open_unit(quantile_level, "quantile_level")
    check_positive(temperature, "temperature")
    check_side(side)


class TFFTThreshold(NamedTuple):
    t_star: Array
    rewards: Array  # (N,) rewards of the offline samples
    info: ThresholdInfo
    weights: Array | None = None  # (N,) normalised importance weights, if any
    tail_ess: Array | None = None  # effective number of samples in the target's tail beyond t*
    max_weight: Array | None = None  # largest normalised tilt weight of the target p*
    t_star_se: Array | None = None  # bootstrap standard error of t*


def tilt_diagnostics(
    rewards: Float[ArrayLike, " n"],
    t_star: Float[ArrayLike, ""],
    quantile_level: float,
    temperature: float,
    side: str,
    weights: Float[ArrayLike, " n"] | None = None,
) -> tuple[Array, Array]:
    """``(tail_ess, max_weight)`` of the weights that represent p* on an offline sample.

    The tilt weights are w_i proportional to weights_i exp(r*_i(t*) / temperature);
    ``tail_ess`` = (sum w)^2 / sum w^2 over the samples beyond ``t_star`` (r > t* upper,
    r < t* lower) and ``max_weight`` the largest normalised w_i.
    """
    r = jnp.asarray(rewards)
    if r.ndim != 1 or r.shape[0] == 0:
        raise ValueError(f"rewards must be a non-empty vector (n,), got shape {r.shape}")
    check_positive(temperature, "temperature")
    if weights is not None and jnp.shape(weights) != r.shape:
        raise ValueError(f"weights must have the shape of rewards {r.shape}, got {jnp.shape(weights)}")
    logw = pseudo_reward(r, t_star, quantile_level, side) / temperature
    if weights is not None:
        logw = logw + jnp.log(jnp.asarray(weights, r.dtype))
    w = jax.nn.softmax(logw)
    beyond = r > t_star if side == "upper" else r < t_star
    tail = jnp.where(beyond, w, 0.0)
    tail_ess = jnp.sum(tail) ** 2 / jnp.maximum(jnp.sum(tail**2), jnp.finfo(r.dtype).tiny)
    return nan_where(traced_out_of_range(temperature, high=float("inf")), (tail_ess, jnp.max(w)))


@functools.partial(jax.jit, static_argnames=("side", "num"))
def _bootstrap_se(key, rewards, quantile_level, temperature, side, weights, num=32):
    """Standard deviation of t* over ``num`` bootstrap resamples of (reward, weight) pairs."""
    n = rewards.shape[0]
    idx = jax.random.randint(key, (num, n), 0, n)

    def one(i):
        return solve_threshold(rewards[i], quantile_level, temperature, side, None if weights is None else weights[i])

    return jnp.std(jax.vmap(one)(idx))


def _finish(key, rewards, quantile_level, temperature, side, weights):
    t_star, info = solve_threshold(rewards, quantile_level, temperature, side, weights, return_info=True)
    tail_ess, max_weight = tilt_diagnostics(rewards, t_star, quantile_level, temperature, side, weights)
    se = _bootstrap_se(jax.random.fold_in(key, 7), jnp.asarray(rewards), quantile_level, temperature, side,
                       None if weights is None else jnp.asarray(weights, jnp.asarray(rewards).dtype))
    return TFFTThreshold(t_star, rewards, info, weights, tail_ess, max_weight, se)


def _rewards(reward_fn, drawn, name="reward_fn"):
    """Rewards of ``sample_fn``'s output: samples, or ``(samples, contexts)`` scored by reward_fn(x, c)."""
    if isinstance(drawn, tuple):
        return check_reward_values(reward_fn, drawn[0], name, context=drawn[1])
    return check_reward_values(reward_fn, drawn, name)


def _check_num_samples(num_samples) -> int:
    return check_int(num_samples, "num_samples", minimum=2)


def tfft_threshold(
    key: Array,
    sample_fn: Callable[[Array, int], Array],
    reward_fn: Callable[[Array], Array],
    *,
    quantile_level: float,
    temperature: float,
    side: str = "upper",
    num_samples: int = 10_000,
    log_weight_fn: Callable[[Array], Array] | None = None,
) -> TFFTThreshold:
    """Stage 1: t* from ``num_samples`` offline samples ``sample_fn(key, n) -> (n, *event)``.

    For a conditional model ``sample_fn`` returns ``(samples, contexts)`` and the reward is
    ``reward_fn(x, c)`` (a pooled threshold over the contexts drawn). By default the samples
    come from the pre-trained model. ``log_weight_fn(samples) -> (n,)``
    turns Stage 1 into importance sampling: the samples then come from a proposal q and the
    log-weights are log p_pre - log q up to a constant (path weights of a fine-tuned model,
    :func:`~tailjax.flows.girsanov.memoryless_sample_and_log_weight`, or ODE likelihoods,
    :func:`~tailjax.flows.ode.ode_log_prob`).

    The result carries the diagnostics ``tail_ess``, ``max_weight`` (:func:`tilt_diagnostics`)
    and ``t_star_se``. Raises ``ValueError`` if ``reward_fn`` returns a non-finite value on any
    sample.
    """
    check_tfft(quantile_level, temperature, side)
    num_samples = _check_num_samples(num_samples)
    samples = sample_fn(key, num_samples)
    rewards = _rewards(reward_fn, samples)
    weights = None
    if log_weight_fn is not None:
        logw = jnp.asarray(log_weight_fn(samples), rewards.dtype)
        if logw.shape != rewards.shape or not bool(jnp.all(jnp.isfinite(logw))):
            raise ValueError("log_weight_fn must return finite log-weights of shape (num_samples,)")
        weights = jax.nn.softmax(logw)
    return _finish(key, rewards, quantile_level, temperature, side, weights)


def tfft_stratified_threshold(
    key: Array,
    sample_fn: Callable[[Array, int], Array],
    proposal_fn: Callable[[Array, int], tuple[Array, Array]],
    reward_fn: Callable[[Array], Array],
    *,
    quantile_level: float,
    temperature: float,
    side: str = "upper",
    num_samples: int = 10_000,
    stratify_level: float = 0.99,
) -> TFFTThreshold:
    """Stage 1 on a stratified importance sample of the pre-trained model p_pre.

    ``sample_fn(key, n) -> (n, *event)`` samples p_pre; ``proposal_fn(key, n) -> ((n, *event), (n,))``
    samples a proposal q with the log-weights log dp_pre/dq of each sample (e.g.
    :func:`~tailjax.flows.girsanov.memoryless_sample_and_log_weight` of a fine-tuned model).
    With s the ``stratify_level`` quantile of the pre-trained rewards (interpolated), the sample keeps the
    pre-trained points with r <= s (weight 1 / n each) and the proposal points with r > s
    (weight dp_pre/dq / n each): an unbiased estimate of p_pre that resolves the tail beyond s.
    Returns the rewards of the kept points and their normalised weights. For a conditional
    model both functions give ``(samples, contexts)`` in place of samples.
    """
    check_tfft(quantile_level, temperature, side)
    check_open_unit(stratify_level, "stratify_level")
    num_samples = _check_num_samples(num_samples)
    key_pre, key_q = jax.random.split(key)
    r_pre = _rewards(reward_fn, sample_fn(key_pre, num_samples))
    x_q, logw_q = proposal_fn(key_q, num_samples)
    r_q = _rewards(reward_fn, x_q, "reward_fn (proposal samples)")
    logw_q = jnp.asarray(logw_q, r_q.dtype)
    if logw_q.shape != r_q.shape:
        raise ValueError(f"proposal_fn must return log-weights of shape ({num_samples},), got {logw_q.shape}")
    s = jnp.quantile(r_pre, stratify_level)
    keep_pre, keep_q = r_pre <= s, r_q > s
    rewards = jnp.concatenate([r_pre[keep_pre], r_q[keep_q]])
    logw = jnp.concatenate([jnp.zeros(int(jnp.sum(keep_pre)), r_pre.dtype), logw_q[keep_q]])
    if not bool(jnp.all(jnp.isfinite(logw))):
        raise ValueError("proposal_fn returned non-finite log-weights on the tail stratum")
    weights = jnp.exp(logw - jnp.max(logw))
    weights = weights / jnp.sum(weights)
    return _finish(key, rewards, quantile_level, temperature, side, weights)

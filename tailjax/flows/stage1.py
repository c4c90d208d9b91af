"""TFFT's Stage 1: the threshold t* from offline samples, plain or importance-sampled.

Names as in :mod:`tailjax.flows.tfft`: ``quantile_level`` is the paper's beta,
``temperature`` its alpha, ``side`` is ``"upper"`` (right-CVaR) or ``"lower"`` (left-CVaR).

F_R averages exp([r - t]_+ / (alpha (1 - beta))): when the tilted target's mass sits where
the pre-trained samples never land, N plain samples under-estimate t* badly. Two remedies:
weights for samples of a proposal (``log_weight_fn`` of :func:`tfft_threshold`), and the
stratified sample of :func:`tfft_stratified_threshold` (pre-trained samples for the bulk, a
tail proposal with path weights beyond their upper quantile).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import check_open_unit, check_positive, check_side
from tailjax.flows.finetune import check_reward_values
from tailjax.risk.threshold import ThresholdInfo, solve_threshold

__all__ = ["TFFTThreshold", "tfft_threshold", "tfft_stratified_threshold", "check_tfft"]


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


def _check_num_samples(num_samples):
    if num_samples < 2:
        raise ValueError(f"num_samples must be >= 2, got {num_samples}")


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
    """Stage 1: t* from ``num_samples`` offline samples ``sample_fn(key, n) -> (n, d)``.

    By default the samples come from the pre-trained model. ``log_weight_fn(samples) -> (n,)``
    turns Stage 1 into importance sampling: the samples then come from a proposal q and the
    log-weights are log p_pre - log q up to a constant (path weights of a fine-tuned model,
    :func:`~tailjax.flows.girsanov.memoryless_sample_and_log_weight`, or ODE likelihoods,
    :func:`~tailjax.flows.ode.ode_log_prob`).

    Raises ``ValueError`` if ``reward_fn`` returns a non-finite value on any sample.
    """
    check_tfft(quantile_level, temperature, side)
    _check_num_samples(num_samples)
    samples = sample_fn(key, num_samples)
    rewards = check_reward_values(reward_fn, samples)
    weights = None
    if log_weight_fn is not None:
        logw = jnp.asarray(log_weight_fn(samples), rewards.dtype)
        if logw.shape != rewards.shape or not bool(jnp.all(jnp.isfinite(logw))):
            raise ValueError("log_weight_fn must return finite log-weights of shape (num_samples,)")
        weights = jax.nn.softmax(logw)
    t_star, info = solve_threshold(rewards, quantile_level, temperature, side, weights, return_info=True)
    return TFFTThreshold(t_star, rewards, info, weights)


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

    ``sample_fn(key, n) -> (n, d)`` samples p_pre; ``proposal_fn(key, n) -> ((n, d), (n,))``
    samples a proposal q with the log-weights log dp_pre/dq of each sample (e.g.
    :func:`~tailjax.flows.girsanov.memoryless_sample_and_log_weight` of a fine-tuned model).
    With s the ``stratify_level`` quantile of the pre-trained rewards (interpolated), the sample keeps the
    pre-trained points with r <= s (weight 1 / n each) and the proposal points with r > s
    (weight dp_pre/dq / n each): an unbiased estimate of p_pre that resolves the tail beyond s.
    Returns the rewards of the kept points and their normalised weights.
    """
    check_tfft(quantile_level, temperature, side)
    check_open_unit(stratify_level, "stratify_level")
    _check_num_samples(num_samples)
    key_pre, key_q = jax.random.split(key)
    r_pre = check_reward_values(reward_fn, sample_fn(key_pre, num_samples))
    x_q, logw_q = proposal_fn(key_q, num_samples)
    r_q = check_reward_values(reward_fn, x_q, "reward_fn (proposal samples)")
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
    t_star, info = solve_threshold(rewards, quantile_level, temperature, side, weights, return_info=True)
    return TFFTThreshold(t_star, rewards, info, weights)

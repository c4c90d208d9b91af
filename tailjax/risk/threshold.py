"""TFFT's one-dimensional dual threshold problems.

Names: ``quantile_level`` is TFFT's beta (a quantile level in (0, 1)), ``temperature`` its
alpha > 0 (the KL temperature of the entropy-regularised problem), and ``side="upper"``
(TFFT's right-CVaR_beta: the mean of the top 1 - beta of the rewards) or ``side="lower"``
(left-CVaR_beta: the mean of the bottom beta). :func:`tail_prob_of_quantile_level` gives the
library's ``tail_prob``: 1 - beta on the upper side, beta on the lower.

With the pseudo-rewards r*_t = [r - t]_+ / (1 - beta) (right) and -[t - r]_+ / beta (left),
the optimal value of max_p E_p[t + r*_t] - alpha KL(p || p_pre) is

    F_R(t) = t + alpha log E[exp([r - t]_+ / (alpha (1 - beta)))]     (convex in t),
    F_L(t) = t + alpha log E[exp(-[t - r]_+ / (alpha beta))].

TFFT takes t* = argmin F_R (right) or argmax F_L (left). F_R is convex. F_L is not concave
in general (on an empirical distribution it is convex between samples with concave kinks at
them), so its maximiser is searched globally on a grid and lies exactly on a sample. At the
optimum t* is the beta-quantile of the tilted target p* ∝ p exp(r*_{t*} / alpha)
(TFFT Theorems 4.1-4.2).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import (
    check_int,
    check_nonempty_last_axis,
    check_open_unit,
    check_positive,
    check_weights,
    traced_bad_weights,
    traced_out_of_range,
)

__all__ = [
    "pseudo_reward", "threshold_objective", "solve_threshold", "ThresholdInfo",
    "tail_prob_of_quantile_level",
]

_GRID = 129
_RESCORE = 64


class ThresholdInfo(NamedTuple):
    """Diagnostics of :func:`solve_threshold`."""

    objective: Array  # F(t*)
    derivative: Array  # F'(t*) from the right (0 at a smooth optimum)
    iterations: Array
    bracket_width: Array


_SIDES = {"upper": "right", "lower": "left"}


def _side(side):
    if side not in _SIDES:
        raise ValueError(f"side must be 'upper' or 'lower', got {side!r}")
    return _SIDES[side]


def tail_prob_of_quantile_level(quantile_level: float, side: str) -> float:
    """The ``tail_prob`` of TFFT's ``quantile_level`` beta: 1 - beta (upper), beta (lower).

    The map is its own inverse: it also turns a ``tail_prob`` into TFFT's beta.
    """
    check_open_unit(quantile_level, "quantile_level")
    return 1.0 - quantile_level if _side(side) == "right" else quantile_level


def _traced_invalid(quantile_level, temperature, weights):
    """Flag of traced arguments out of range (NaN results); False when all are concrete."""
    return (traced_out_of_range(quantile_level)
            | traced_out_of_range(temperature, high=float("inf"))
            | traced_bad_weights(weights))


def _check(rewards, beta, alpha, side, weights):
    check_open_unit(beta, "quantile_level")
    check_positive(alpha, "temperature")
    _side(side)
    check_nonempty_last_axis(rewards, "rewards")
    if jnp.ndim(rewards) != 1:
        raise ValueError(f"rewards must be 1-D (vmap for a batch), got shape {jnp.shape(rewards)}")
    check_weights(weights, rewards)


def pseudo_reward(
    rewards: Float[ArrayLike, "..."], t: Float[ArrayLike, ""], quantile_level: float, side: str
) -> Float[Array, "..."]:
    """TFFT's pseudo-reward r*_t: [r - t]_+ / (1 - beta) (upper) or -[t - r]_+ / beta (lower)."""
    check_open_unit(quantile_level, "quantile_level")
    if _side(side) == "right":
        value = jnp.maximum(jnp.asarray(rewards) - t, 0.0) / (1.0 - quantile_level)
    else:
        value = -jnp.maximum(t - jnp.asarray(rewards), 0.0) / quantile_level
    return jnp.where(traced_out_of_range(quantile_level), jnp.nan, value)


def _log_probs(rewards, weights):
    n = rewards.shape[-1]
    if weights is None:
        return jnp.full(rewards.shape, -jnp.log(jnp.asarray(n, rewards.dtype)))
    logw = jnp.log(jnp.asarray(weights, rewards.dtype))
    return logw - logsumexp(logw)


def _objective(t, rewards, logp, beta, alpha, side):
    """``side`` here is TFFT's "right" / "left"."""
    if side == "right":
        r_star = jnp.maximum(rewards - t, 0.0) / (1.0 - beta)
    else:
        r_star = -jnp.maximum(t - rewards, 0.0) / beta
    return t + alpha * logsumexp(logp + r_star / alpha)


def threshold_objective(
    t: Float[ArrayLike, ""],
    rewards: Float[ArrayLike, " n"],
    quantile_level: float,
    temperature: float,
    side: str = "upper",
    *,
    weights: Float[ArrayLike, " n"] | None = None,
) -> Float[Array, ""]:
    """F_R(t) (``side="upper"``) or F_L(t) (``side="lower"``) by log-sum-exp.

    Args:
      t: threshold (scalar; vmap for a grid).
      rewards: ``(n,)`` reward samples from the pre-trained model.
      quantile_level: TFFT's beta in (0, 1).
      temperature: TFFT's KL temperature alpha > 0.
      side: ``"upper"`` (right-CVaR) or ``"lower"`` (left-CVaR).
      weights: optional non-negative sample weights, normalised internally.
    """
    _check(rewards, quantile_level, temperature, side, weights)
    r = jnp.asarray(rewards)
    value = _objective(
        jnp.asarray(t, r.dtype), r, _log_probs(r, weights), quantile_level, temperature, _side(side)
    )
    return jnp.where(_traced_invalid(quantile_level, temperature, weights), jnp.nan, value)


def _derivatives(t, r, logp, beta, alpha, side):
    """g = F'(t+) and its derivative between kinks, from the tilted mass beyond t."""
    if side == "right":
        c = alpha * (1.0 - beta)
        beyond = r > t
        log_tilt = logp + jnp.maximum(r - t, 0.0) / c
    else:
        c = alpha * beta
        beyond = r <= t
        log_tilt = logp - jnp.maximum(t - r, 0.0) / c
    neg_inf = jnp.asarray(-jnp.inf, r.dtype)
    log_in = logsumexp(jnp.where(beyond, log_tilt, neg_inf))
    q = jnp.exp(log_in - logsumexp(log_tilt))
    # Between kinks dq/dt = -q (1 - q) / c on both sides.
    if side == "right":
        return 1.0 - q / (1.0 - beta), q * (1.0 - q) / ((1.0 - beta) * c)
    return 1.0 - q / beta, q * (1.0 - q) / (beta * c)


def _bracket(r, logp, beta, alpha):
    """A bracket [lo, hi] around argmin F_R (convex) from a grid of reward quantiles."""
    finite = jnp.isfinite(r)
    r_min = jnp.min(jnp.where(finite, r, jnp.inf))
    r_max = jnp.max(jnp.where(finite, r, -jnp.inf))
    span = r_max - r_min + 1.0
    grid = jnp.quantile(jnp.clip(r, r_min, r_max), jnp.linspace(0.0, 1.0, _GRID, dtype=r.dtype))
    grid = jnp.concatenate([grid[:1] - span, grid, grid[-1:] + span])
    values = jax.vmap(lambda t: _objective(t, r, logp, beta, alpha, "right"))(grid)
    m = jnp.clip(jnp.argmin(values), 1, grid.shape[0] - 2)
    return grid[m - 1], grid[m + 1]


def _left_argmax(r, logp, beta, alpha):
    """argmax F_L over the samples (where it lies), by prefix log-sum-exp in one sort.

    F_L(r_k) = r_k + alpha log(sum_{i<k} p_i e^{-(r_k - r_i)/c} + sum_{i>=k} p_i), c = alpha beta.
    The best few by this prefix formula are re-scored directly, so rounding in the prefix
    sums cannot pick a wrong sample.
    """
    c = alpha * beta
    order = jnp.argsort(r)
    rs, lp = r[order], logp[order]
    shift = rs - jnp.median(rs)
    a = lp + shift / c
    neg_inf = jnp.full((1,), -jnp.inf, r.dtype)
    below = jnp.concatenate([neg_inf, jax.lax.cumlogsumexp(a)[:-1]]) - shift / c
    at_or_above = jax.lax.cumlogsumexp(lp, reverse=True)
    approx = rs + alpha * jnp.logaddexp(below, at_or_above)
    k = min(_RESCORE, rs.shape[0])
    _, top = jax.lax.top_k(approx, k)
    exact = jax.vmap(lambda t: _objective(t, r, logp, beta, alpha, "left"))(rs[top])
    return rs[top[jnp.argmax(exact)]]


def _safeguarded_newton(r, logp, beta, alpha, lo, hi, rtol, max_iter):
    """Root of the increasing g = F_R'(t) in [lo, hi], g(lo) < 0 <= g(hi).

    Newton on the smooth piece between kinks, bisection whenever the step leaves the
    bracket or would shrink it too slowly; a probe just past each Newton point closes the
    bracket from the other side.
    """

    def oriented(t):
        return _derivatives(t, r, logp, beta, alpha, "right")

    def cond(state):
        lo, hi, _, it = state
        scale = jnp.maximum(jnp.maximum(jnp.abs(lo), jnp.abs(hi)), 1e-12)
        return (hi - lo > rtol * scale) & (it < max_iter)

    def body(state):
        lo, hi, t, it = state
        g, dg = oriented(t)
        lo = jnp.where(g < 0, t, lo)
        hi = jnp.where(g < 0, hi, t)
        newton = t - g / jnp.where(dg > 0, dg, jnp.inf)
        inside = (newton > lo) & (newton < hi) & (dg > 0)
        t_next = jnp.where(inside, newton, 0.5 * (lo + hi))
        # Newton steps that would stall next to one end are replaced by bisection.
        stall = jnp.minimum(t_next - lo, hi - t_next) < 1e-3 * (hi - lo)
        t_next = jnp.where(inside & ~stall, t_next, 0.5 * (lo + hi))
        # Two-sided probe around a Newton point collapses the bracket quickly.
        probe = jnp.where(g < 0, t_next + rtol * jnp.abs(t_next), t_next - rtol * jnp.abs(t_next))
        gp, _ = oriented(probe)
        lo = jnp.where(inside & (gp < 0), jnp.maximum(lo, probe), lo)
        hi = jnp.where(inside & (gp >= 0), jnp.minimum(hi, probe), hi)
        t_next = jnp.clip(t_next, lo, hi)
        return lo, hi, t_next, it + 1

    init = (lo, hi, 0.5 * (lo + hi), jnp.asarray(0, jnp.int32))
    lo, hi, t, it = jax.lax.while_loop(cond, body, init)
    return lo, hi, it


def solve_threshold(
    rewards: Float[ArrayLike, " n"],
    quantile_level: float,
    temperature: float,
    side: str = "upper",
    weights: Float[ArrayLike, " n"] | None = None,
    *,
    rtol: float = 1e-6,
    max_iter: int = 200,
    return_info: bool = False,
):
    """TFFT Stage 1: t* = argmin F_R (upper) or argmax F_L (lower), to ``rtol``.

    Right: a grid of 129 reward quantiles brackets the minimiser of the convex F_R; a
    safeguarded Newton/bisection iteration on F_R' (Newton between kinks, bisection
    otherwise) shrinks the bracket below ``rtol * |t*|``. Left: F_L is convex between
    samples, so its global maximiser is a sample; all samples are scored at once by prefix
    log-sum-exps after one sort and the best is returned exactly. The result carries no
    gradient (``stop_gradient``).

    Args:
      rewards: ``(n,)`` rewards of samples from the pre-trained model.
      quantile_level: TFFT's beta in (0, 1) (upper tail mass 1 - beta, lower tail mass beta).
      temperature: TFFT's KL temperature alpha > 0.
      side: ``"upper"`` (right-CVaR) or ``"lower"`` (left-CVaR).
      weights: optional non-negative sample weights, normalised internally.
      return_info: also return a :class:`ThresholdInfo`.

    Bad static arguments raise ``ValueError``; under ``jit`` (traced levels, rewards or
    weights) NaN rewards, weights that are not finite, negative or all zero, a
    ``quantile_level`` outside (0, 1) or a ``temperature`` <= 0 give ``t = NaN``; so does a
    ``+inf`` reward (F_R is then infinite everywhere and F_L unbounded). ``-inf`` rewards
    are allowed.
    """
    _check(rewards, quantile_level, temperature, side, weights)
    check_positive(rtol, "rtol")
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    r = jnp.asarray(rewards)
    if not jnp.issubdtype(r.dtype, jnp.floating):
        r = r.astype(jnp.result_type(float))
    if weights is not None:
        weights = jnp.asarray(weights, r.dtype)
    t, info = _solve(
        r, weights, quantile_level, temperature, side=_side(side), rtol=float(rtol), max_iter=max_iter
    )
    return (t, info) if return_info else t


@functools.partial(jax.jit, static_argnames=("side", "rtol", "max_iter"))
def _solve(r, weights, beta, alpha, *, side, rtol, max_iter):
    """Compiled once per shape and side; ``beta`` and ``alpha`` may be traced."""
    r = jax.lax.stop_gradient(r)
    if weights is not None:
        weights = jax.lax.stop_gradient(weights)
    logp = _log_probs(r, weights)
    if side == "right":
        lo, hi = _bracket(r, logp, beta, alpha)
        lo, hi, it = _safeguarded_newton(r, logp, beta, alpha, lo, hi, rtol, max_iter)
        t = 0.5 * (lo + hi)
    else:
        t = _left_argmax(r, logp, beta, alpha)
        lo = hi = t
        it = jnp.asarray(0, jnp.int32)
    g, _ = _derivatives(t, r, logp, beta, alpha, side)
    # What cannot be checked under jit gives NaN: NaN rewards, bad weights, or a traced
    # quantile_level outside (0, 1) or temperature <= 0.
    invalid = jnp.any(jnp.isnan(r)) | ~((beta > 0) & (beta < 1) & (alpha > 0))
    # A +inf reward of positive mass makes F_R infinite everywhere and F_L unbounded above.
    invalid = invalid | jnp.any((r == jnp.inf) & (logp > -jnp.inf))
    if weights is not None:
        invalid = invalid | jnp.any(~jnp.isfinite(weights) | (weights < 0)) | (jnp.sum(weights) <= 0)
    t = jnp.where(invalid, jnp.nan, t)
    return t, ThresholdInfo(_objective(t, r, logp, beta, alpha, side), g, it, hi - lo)

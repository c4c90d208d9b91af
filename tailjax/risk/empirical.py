"""VaR and CVaR of an empirical (optionally weighted) distribution, exactly.

Convention (library-wide): ``tail_prob`` is the probability mass of the tail (0.01 = the
worst 1%); ``side="upper"`` treats large values as bad (losses), ``side="lower"`` treats
small values as bad (rewards). The lower tail is the upper tail of the negation:
``cvar(x, p, side="lower") == -cvar(-x, p)``.

Weights. ``var`` and ``cvar`` act on the distribution sum_i p_i delta(x_i) with
p = weights / sum(weights): weights are normalised internally (self-normalised importance
sampling). ``ru_objective`` instead uses the raw weights as the measure (1/n) sum_i w_i
delta(x_i), which is the unbiased importance-sampling objective.

All functions reduce over the last axis, so a leading batch axis works directly or under
``jax.vmap``. Bad static input raises ``ValueError``. Where a value cannot be checked
(under ``jit``), a row with NaN samples, weights that are not finite, negative or all zero,
or a traced ``tail_prob`` outside (0, 1] gives NaN; pass ``checked=True`` to raise instead.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.experimental import checkify
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import (
    check_int,
    check_nonempty_last_axis,
    check_open_unit,
    check_side,
    check_weights,
    run_checked,
    traced_bad_weights,
    traced_out_of_range,
)

__all__ = ["var", "cvar", "var_cvar", "ru_objective", "mean_cvar"]


def _validate(samples, tail_prob, weights, side, *, closed_right=False):
    check_open_unit(tail_prob, "tail_prob", closed_right=closed_right)
    check_side(side)
    check_nonempty_last_axis(samples, "samples")
    check_weights(weights, samples)


def _traced_checks(samples, weights, tail_prob=None):
    checkify.check(~jnp.any(jnp.isnan(samples)), "samples contain NaN")
    if weights is not None:
        checkify.check(jnp.all(jnp.isfinite(weights)), "weights must be finite")
        checkify.check(jnp.all(weights >= 0), "weights must be non-negative")
        checkify.check(jnp.all(jnp.sum(weights, -1) > 0), "weights of a row sum to zero")
    if tail_prob is not None:
        p = jnp.asarray(tail_prob)
        checkify.check((p > 0) & (p <= 1), "tail_prob must lie in (0, 1]")


def _invalid(samples, weights, tail_prob):
    """Per-row flag of inputs whose result is documented as NaN: NaN samples, weights that are
    not finite, negative or all zero, and a traced ``tail_prob`` outside (0, 1]."""
    bad = jnp.any(jnp.isnan(_float(samples)), axis=-1)
    if weights is not None:
        w = _float(weights)
        w_bad = (jnp.any(~jnp.isfinite(w) | (w < 0), axis=-1)
                 | (jnp.sum(jnp.where(jnp.isfinite(w), w, 0.0), axis=-1) <= 0))
        bad = bad | w_bad
    if not isinstance(tail_prob, (int, float)):
        p = jnp.asarray(tail_prob)
        bad = bad | ~((p > 0) & (p <= 1))
    return bad


def accumulator(dtype):
    """The dtype sums of ``dtype`` values are taken in: float32 at least."""
    return jnp.dtype(jnp.float32) if jnp.finfo(dtype).bits < 32 else jnp.dtype(dtype)


def _float(x):
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


def tail_count(n: int, tail_prob, dtype=None):
    """n * tail_prob, snapped to a positive integer when within rounding of one.

    Concrete ``tail_prob``: computed in double precision (relative snap 1e-9); traced: in
    ``dtype``, with the snap passing the derivative n straight through (so the gradient in
    ``tail_prob`` at an integer count lies between the two one-sided derivatives, not 0).
    A count below 1 is never snapped to 0: the tail is then a share of the largest atom.
    The VaR of n unweighted samples is the (floor(tail_count) + 1)-th largest.
    ``tail_prob`` must lie in (0, 1]: a concrete one outside raises ``ValueError``, a traced
    one gives NaN. ``n`` (the sample count) must be >= 1.
    """
    check_open_unit(tail_prob, "tail_prob", closed_right=True)
    n = check_int(n, "n", minimum=1)
    if not isinstance(tail_prob, jax.core.Tracer):
        c = n * float(tail_prob)
        r = round(c)
        return float(r) if r > 0 and abs(c - r) <= 1e-9 * max(1.0, c) else c
    dtype = jnp.result_type(tail_prob, float) if dtype is None else dtype
    c = n * jnp.asarray(tail_prob, dtype)
    r = jnp.round(c)
    snap = (r > 0) & (jnp.abs(c - r) <= 4 * jnp.finfo(dtype).eps * jnp.maximum(c, 1.0))
    count = c + jax.lax.stop_gradient(jnp.where(snap, r - c, 0.0))
    return jnp.where(traced_out_of_range(tail_prob, high_closed=True), jnp.nan, count)


_TOP_K_SHARE = 0.125  # select with top_k when the tail needs at most this share of the values


def _top_size(n, tail_prob):
    """How many of the largest values the unweighted VaR/CVaR needs (n: sort them all)."""
    if isinstance(tail_prob, jax.core.Tracer) or jnp.ndim(tail_prob) != 0:
        return n
    needed = min(math.floor(tail_count(n, float(tail_prob))) + 2, n)  # +1: the atom at a boundary
    return needed if needed <= _TOP_K_SHARE * n else n


def _var_cvar_upper(samples, tail_prob, weights):
    """Sort descending; give each atom the share of its mass inside the tail.

    16-bit inputs are summed in float32 and the results rounded once to their dtype."""
    x = _float(samples)
    out_dtype = x.dtype
    x = x.astype(accumulator(x.dtype))
    n = x.shape[-1]
    tail = jnp.asarray(tail_prob, x.dtype)
    if weights is None:
        count = tail_count(n, tail_prob, x.dtype)
        top = _top_size(n, tail_prob)
        # The VaR is the (floor(count) + 1)-th largest: with a concrete tail_prob only that
        # many values are selected (lax.top_k) when it is a small part of n, else all sorted.
        values = jax.lax.top_k(x, top)[0] if top < n else -jnp.sort(-x, axis=-1)
        m = values.shape[-1]
        # max/min (not clip) so that at an integer count the derivative splits evenly
        # between the two atoms at the boundary: a subgradient between the one-sided ones.
        share = jnp.minimum(jnp.maximum(count - jnp.arange(m, dtype=x.dtype), 0.0), 1.0) / n
        k = jnp.minimum(jnp.floor(jnp.asarray(count, x.dtype)).astype(jnp.int32), m - 1)
        k = jnp.broadcast_to(k, values.shape[:-1])
        tail = jnp.asarray(count, x.dtype) / n
    else:
        w = jnp.broadcast_to(_float(weights).astype(x.dtype), x.shape)
        # Scale by a power of two near the largest weight before summing: weights near the
        # float maximum would overflow the sum (and 1 / max would flush to zero).
        _, exponent = jnp.frexp(jax.lax.stop_gradient(jnp.max(w, axis=-1, keepdims=True)))
        w = jnp.ldexp(w, -exponent)
        order = jnp.argsort(-x, axis=-1)
        values = jnp.take_along_axis(x, order, axis=-1)
        w_sorted = jnp.take_along_axis(w, order, axis=-1)
        mass = w_sorted / jnp.sum(w_sorted, axis=-1, keepdims=True)
        before = jnp.cumsum(mass, axis=-1) - mass
        share = jnp.clip(tail - before, 0.0, mass)
        # The last atom whose preceding mass does not exceed the tail mass.
        k = jnp.sum(before <= tail * (1 + 4 * jnp.finfo(x.dtype).eps), axis=-1) - 1
    # Atoms outside the tail take no part, also when infinite (0 * -inf would be NaN).
    inside = jnp.where((share > 0) | jnp.isfinite(values), values, 0.0)
    # Summed in units of a power of two near the largest finite magnitude: a share (about
    # 1/n) times a tiny value would flush to zero, and a huge one could overflow the sum.
    magnitude = jnp.max(jnp.where(jnp.isfinite(values), jnp.abs(values), 0.0), axis=-1)
    _, exponent = jnp.frexp(jax.lax.stop_gradient(magnitude))
    scaled = jnp.ldexp(inside, -exponent[..., None])
    cvar_value = jnp.ldexp(jnp.sum(share * scaled, axis=-1) / tail, exponent)
    # VaR (Rockafellar-Uryasev): the smallest v with P(X > v) <= tail_prob.
    var_value = jnp.take_along_axis(values, k[..., None], axis=-1)[..., 0]
    return var_value.astype(out_dtype), cvar_value.astype(out_dtype)


def _oriented(samples, side):
    return samples if side == "upper" else -_float(samples)


def var_cvar(
    samples: Float[ArrayLike, "... n"],
    tail_prob: float,
    *,
    weights: Float[ArrayLike, "... n"] | None = None,
    side: str = "upper",
    checked: bool = False,
) -> tuple[Float[Array, "..."], Float[Array, "..."]]:
    """VaR and CVaR of the tail of mass ``tail_prob`` in one sort; see :func:`cvar`."""
    _validate(samples, tail_prob, weights, side, closed_right=True)

    def compute(samples, weights):
        if checked:
            _traced_checks(samples, weights, tail_prob)
        v, c = _var_cvar_upper(_oriented(samples, side), tail_prob, weights)
        v, c = (v, c) if side == "upper" else (-v, -c)
        invalid = _invalid(samples, weights, tail_prob)
        return jnp.where(invalid, jnp.nan, v), jnp.where(invalid, jnp.nan, c)

    if checked:
        return run_checked(compute, samples, weights)
    return compute(samples, weights)


def var(
    samples: Float[ArrayLike, "... n"],
    tail_prob: float,
    *,
    weights: Float[ArrayLike, "... n"] | None = None,
    side: str = "upper",
    checked: bool = False,
) -> Float[Array, "..."]:
    """Value-at-Risk: the boundary of the tail of mass ``tail_prob``.

    Upper side: the smallest sample v with P(X > v) <= tail_prob (the lower
    (1 - tail_prob)-quantile, the left end of the Rockafellar-Uryasev minimiser set).
    Lower side: ``-var(-samples, tail_prob)``.

    Args:
      samples: ``(..., n)``; reduced over the last axis.
      tail_prob: tail mass in (0, 1].
      weights: optional ``(..., n)`` non-negative weights, normalised internally.
      side: ``"upper"`` (losses) or ``"lower"`` (rewards).
      checked: raise on NaN samples or negative weights (checkify).
    """
    return var_cvar(samples, tail_prob, weights=weights, side=side, checked=checked)[0]


def cvar(
    samples: Float[ArrayLike, "... n"],
    tail_prob: float,
    *,
    weights: Float[ArrayLike, "... n"] | None = None,
    side: str = "upper",
    checked: bool = False,
) -> Float[Array, "..."]:
    """Conditional Value-at-Risk: the mean of the worst ``tail_prob`` of the mass.

    Exact on the empirical (weighted) distribution, splitting the atom at the VaR so that
    precisely ``tail_prob`` of the mass is averaged (Rockafellar & Uryasev 2002). Upper side:
    mean of the largest values; lower side: mean of the smallest values (returned as is,
    i.e. ``-cvar(-samples)``). ``tail_prob = 1`` gives the mean.

    Differentiable in ``samples`` and ``weights`` (subgradients at ties). For unweighted rows
    of 2^15 or more samples on a GPU (one row of 1e8, or a batch of shorter rows),
    :func:`tailjax.risk.cvar_large` avoids the full sort.

    Args:
      samples: ``(..., n)``; reduced over the last axis.
      tail_prob: tail mass in (0, 1].
      weights: optional ``(..., n)`` non-negative weights, normalised internally.
      side: ``"upper"`` (losses) or ``"lower"`` (rewards).
      checked: raise on NaN samples or negative weights (checkify).

    Returns:
      An array of shape ``samples.shape[:-1]``.
    """
    return var_cvar(samples, tail_prob, weights=weights, side=side, checked=checked)[1]


def ru_objective(
    u: Float[ArrayLike, "..."],
    losses: Float[ArrayLike, "... n"],
    tail_prob: float,
    *,
    weights: Float[ArrayLike, "... n"] | None = None,
) -> Float[Array, "..."]:
    """Rockafellar-Uryasev objective u + (1/(n tail_prob)) sum_i w_i (l_i - u)_+.

    With ``weights=None`` (w = 1) this is the SAA objective of the tail-risk tutorial
    (eq. (7)); with likelihood ratios as ``weights`` it is the importance-sampling objective
    (eq. (10)). Weights are *not* normalised. Its minimum over u is the CVaR of the upper
    tail and the VaR is a minimiser.

    Under ``jit``, a traced ``tail_prob`` outside (0, 1] or weights that are not finite,
    negative or all zero give NaN.

    Args:
      u: threshold, broadcast against ``losses.shape[:-1]``.
      losses: ``(..., n)``.
      tail_prob: tail mass in (0, 1].
      weights: optional ``(..., n)`` non-negative weights (e.g. likelihood ratios).
    """
    check_open_unit(tail_prob, "tail_prob", closed_right=True)
    check_nonempty_last_axis(losses, "losses")
    check_weights(weights, losses)
    losses = _float(losses)
    u = jnp.asarray(u, losses.dtype)
    excess = jnp.maximum(losses - u[..., None], 0.0)
    if weights is not None:
        excess = excess * jnp.asarray(weights, losses.dtype)
    value = u + jnp.mean(excess, axis=-1) / jnp.asarray(tail_prob, losses.dtype)
    invalid = traced_out_of_range(tail_prob, high_closed=True) | traced_bad_weights(weights)
    return jnp.where(invalid, jnp.nan, value)


def mean_cvar(
    samples: Float[ArrayLike, "... n"],
    tail_prob: float,
    risk_weight: float,
    *,
    weights: Float[ArrayLike, "... n"] | None = None,
    side: str = "upper",
) -> Float[Array, "..."]:
    """Mean-CVaR trade-off ``risk_weight * mean + (1 - risk_weight) * CVaR``.

    ``risk_weight`` (the tutorial's lambda) lies in [0, 1]: 1 gives the mean, 0 the CVaR.
    The mean uses the same (normalised) weights as the CVaR.
    """
    if not 0.0 <= float(risk_weight) <= 1.0:
        raise ValueError(f"risk_weight must lie in [0, 1], got {risk_weight}")
    _validate(samples, tail_prob, weights, side, closed_right=True)
    x = _float(samples)
    if weights is None:
        mean = jnp.mean(x, axis=-1)
    else:
        w = jnp.broadcast_to(jnp.asarray(weights, x.dtype), x.shape)
        mean = jnp.sum(w * x, axis=-1) / jnp.sum(w, axis=-1)
    tail = cvar(x, tail_prob, weights=weights, side=side)
    return risk_weight * mean + (1.0 - risk_weight) * tail

"""The exact 0-1 knapsack under ``jit``: dynamic programming over integer capacities, or
depth-first branch and bound.

    max_w  v^T w   s.t.  weights^T w <= capacity,  w in {0, 1}^n

(PyEPO's default knapsack; :func:`tailjax.layers.fractional_knapsack` is its LP relaxation,
``0 <= w <= 1``).

- **Dynamic programming** when every weight is an integer multiple of ``weight_unit`` and
  the capacity is concrete: ``best[k]``, the best value within weight ``k`` units, over
  ``k = 0..floor(capacity / weight_unit)``, one ``lax.scan`` over the items, then a backward
  scan over the stored take/skip table. Time and memory ``O(n C)``, ``C`` the capacity in
  units. PyEPO's generator draws weights in hundredths (``choice(range(300, 800)) / 100``):
  ``weight_unit=0.01``, ``C = 100 capacity``.
- **Branch and bound** otherwise (any positive weights, traced capacity): items sorted by
  value/weight, the 1-branch before the 0-branch, each node bounded by the greedy fractional
  fill of the remaining items (Horowitz-Sahni), in a ``lax.while_loop`` of at most
  ``max_nodes`` nodes; ``return_info=True`` says whether the search finished (then the
  decision is optimal). The capacity is checked on float sums up to a few ulps,
  ``4 eps (capacity + sum(weights))``, as solvers check it up to their feasibility
  tolerance (an exact fit must not be lost to rounding).

Items of value <= 0 are never taken. Ties between optimal sets are broken towards leaving
an item out (DP) or the first set found (branch and bound). No gradient (an oracle).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import is_concrete

__all__ = ["KnapsackInfo", "binary_knapsack"]


class KnapsackInfo(NamedTuple):
    value: Array  # () v^T w of the returned decision
    nodes: Array  # () branch-and-bound nodes visited (0 for DP)
    optimal: Array  # () bool: DP, or a finished branch and bound


def _units(weights, capacity, weight_unit):
    """Integer weights and capacity in units of ``weight_unit``, or None if not integral."""
    if not (is_concrete(weights) and is_concrete(capacity)):
        return None
    w = np.asarray(weights, np.float64) / weight_unit
    wi = np.rint(w)
    if np.any(np.abs(w - wi) > 1e-7 * np.maximum(1.0, np.abs(w))) or np.any(wi < 0):
        return None
    cap = int(np.floor(float(capacity) / weight_unit + 1e-7))
    return wi.astype(np.int32), max(cap, -1)


def _dynamic_programme(values, weights_int, cap):
    ks = jnp.arange(cap + 1, dtype=jnp.int32)

    def add_item(best, item):
        v, w = item
        with_item = jnp.where(ks >= w, best[jnp.clip(ks - w, 0)] + v, -jnp.inf)
        take = with_item > best
        return jnp.where(take, with_item, best), take

    best0 = jnp.zeros((cap + 1,), values.dtype)
    _, takes = jax.lax.scan(add_item, best0, (values, jnp.asarray(weights_int, jnp.int32)))

    def back(k, item):
        take_row, w = item
        t = take_row[k]
        return jnp.where(t, k - w, k), t

    _, chosen = jax.lax.scan(back, jnp.asarray(cap, jnp.int32), (takes, jnp.asarray(weights_int, jnp.int32)),
                             reverse=True)
    return chosen


class _Node(NamedTuple):
    i: Array  # next item (sorted order) to branch on
    x: Array  # (n,) bool, current partial assignment (items < i)
    best: Array  # () incumbent value
    best_x: Array  # (n,) bool
    done: Array
    nodes: Array


def _branch_and_bound(values, weights, capacity, max_nodes):
    n = values.shape[0]
    dtype = values.dtype
    ratio = jnp.where(weights > 0, values / jnp.where(weights > 0, weights, 1.0), jnp.inf)
    order = jnp.argsort(-jnp.where(values > 0, ratio, -jnp.inf))
    v, w = values[order], weights[order]
    useful = v > 0
    idx = jnp.arange(n)
    # the float sums of weights are accepted up to a few ulps (an exact fit such as
    # 3.11 + 6.13 + 5.82 + 4.94 = 20 sums to 20.000000000000004 in float64)
    capacity = capacity + 4 * jnp.finfo(dtype).eps * (jnp.abs(capacity) + jnp.sum(jnp.abs(w)))

    def bound(i, val, rem):
        mask = (idx >= i) & useful
        ws, vs = jnp.where(mask, w, 0.0), jnp.where(mask, v, 0.0)
        before = jnp.cumsum(ws) - ws
        frac = jnp.where(ws > 0, jnp.clip((rem - before) / jnp.where(ws > 0, ws, 1.0), 0.0, 1.0),
                         (rem >= before).astype(dtype))
        return val + jnp.sum(vs * frac)

    def step(s: _Node) -> _Node:
        xf = s.x.astype(dtype)
        val, rem = jnp.sum(v * xf), capacity - jnp.sum(w * xf)
        leaf = s.i >= n
        improve = leaf & (val > s.best)
        best = jnp.where(improve, val, s.best)
        best_x = jnp.where(improve, s.x, s.best_x)
        retreat = leaf | (bound(s.i, val, rem) <= best)
        # forward: take item i when it fits and pays
        i_c = jnp.minimum(s.i, n - 1)
        take = useful[i_c] & (w[i_c] <= rem)
        x_fwd = s.x.at[i_c].set(take)
        # backtrack: the last taken item before i goes to its 0-branch
        taken = s.x & (idx < s.i)
        j = jnp.max(jnp.where(taken, idx, -1))
        x_back = s.x & (idx < j)
        done = retreat & (j < 0)
        x = jnp.where(retreat, x_back, x_fwd)
        i = jnp.where(retreat, j + 1, s.i + 1)
        return _Node(i, x, best, best_x, done, s.nodes + 1)

    zeros = jnp.zeros((n,), bool)
    init = _Node(jnp.asarray(0), zeros, jnp.zeros((), dtype), zeros, jnp.asarray(False), jnp.asarray(0))
    final = jax.lax.while_loop(lambda s: ~s.done & (s.nodes < max_nodes), step, init)
    chosen = jnp.zeros((n,), bool).at[order].set(final.best_x)
    return chosen, final.nodes, final.done


def binary_knapsack(
    values: Float[ArrayLike, " n"],
    weights: Float[ArrayLike, " n"],
    capacity: Float[ArrayLike, ""],
    *,
    weight_unit: float | None = None,
    max_nodes: int = 200_000,
    return_info: bool = False,
):
    """argmax values^T w over w in {0, 1}^n with weights^T w <= capacity (module docstring).

    Args:
      values: ``(n,)`` item values (the maximised objective; negate costs).
      weights: ``(n,)`` non-negative item weights.
      capacity: the weight budget (a scalar).
      weight_unit: when given and every weight is an integer multiple of it (concrete weights
        and capacity), the dynamic programme over ``floor(capacity / weight_unit) + 1``
        capacities; ``None`` tries ``1`` (integer weights). Otherwise branch and bound.
      max_nodes: node budget of the branch and bound (static).
      return_info: also return a :class:`KnapsackInfo`.

    Returns:
      ``w`` of shape ``(n,)`` with 0/1 entries in the dtype of ``values`` (and the info).
    """
    values = jnp.asarray(values)
    dtype = jnp.result_type(values.dtype, float)
    values = values.astype(dtype)
    if values.ndim != 1 or values.shape[0] == 0:
        raise ValueError(f"values must be a non-empty vector (n,), got shape {values.shape}")
    if jnp.shape(weights) != values.shape:
        raise ValueError(f"weights must have the shape of values {values.shape}, got {jnp.shape(weights)}")
    if weight_unit is not None and not float(weight_unit) > 0:
        raise ValueError(f"weight_unit must be > 0, got {weight_unit}")
    if not isinstance(max_nodes, (int, np.integer)) or max_nodes < 1:
        raise ValueError(f"max_nodes must be a positive integer, got {max_nodes!r}")
    if is_concrete(weights) and np.any(np.asarray(weights) < 0):
        raise ValueError("weights must be non-negative")
    units = _units(weights, capacity, 1.0 if weight_unit is None else float(weight_unit))
    if units is not None and units[1] < 0:
        w = jnp.zeros_like(values)
        info = KnapsackInfo(jnp.zeros((), dtype), jnp.asarray(0), jnp.asarray(True))
        return (w, info) if return_info else w
    if units is not None:
        chosen = _dynamic_programme(values, *units)
        nodes, optimal = jnp.asarray(0), jnp.asarray(True)
    else:
        weights = jnp.asarray(weights).astype(dtype)
        chosen, nodes, optimal = _branch_and_bound(
            values, weights, jnp.asarray(capacity).astype(dtype), int(max_nodes))
    w = chosen.astype(dtype)
    if not return_info:
        return w
    return w, KnapsackInfo(values @ w, nodes, optimal)

"""Exact linear oracles w*(c) = argmin_{w in W} c^T w for the surrogate losses (SPO+, NCE,
LTR, MAP), one instance each; ``jax.vmap`` for a batch. They are piecewise constant in ``c``
(zero gradient almost everywhere): wrap them in ``jax.lax.stop_gradient`` or use them only
where a loss needs the solution as data. Costs are in minimisation form.

- :func:`grid_shortest_path`: the PyEPO grid network (arcs right and down, source the
  top-left node, sink the bottom-right), by dynamic programming under ``lax.scan``.
- :func:`fractional_knapsack`: ``min c^T w`` s.t. ``weights^T w <= capacity, 0 <= w <= 1``
  (i.e. maximise values ``-c``), by sorting value/weight.
- :func:`box_budget`: ``min c^T w`` s.t. ``lower <= w <= upper, sum w = total`` (energy
  scheduling), by filling the cheapest coordinates first.

For a QP (the portfolio) use :func:`tailjax.layers.point_decision`.
"""

from __future__ import annotations

import operator
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import check_scalar, is_concrete

__all__ = ["grid_arcs", "grid_shortest_path", "fractional_knapsack", "box_budget"]


@lru_cache(maxsize=None)
def grid_arcs(rows: int, cols: int) -> tuple[tuple[int, int], ...]:
    """Arcs of the PyEPO grid network in PyEPO's order: for each row, its rightward arcs,
    then (except on the last row) its downward arcs. Nodes are numbered row-major."""
    rows, cols = _grid_dims((rows, cols))
    if rows < 1 or cols < 1 or rows * cols < 2:
        raise ValueError(f"grid must have positive dimensions and >= 2 nodes, got {(rows, cols)}")
    arcs = []
    for i in range(rows):
        arcs += [(i * cols + j, i * cols + j + 1) for j in range(cols - 1)]
        if i < rows - 1:
            arcs += [(i * cols + j, (i + 1) * cols + j) for j in range(cols)]
    return tuple(arcs)


def _grid_dims(grid) -> tuple[int, int]:
    """``(rows, cols)`` as ints; ``ValueError`` naming ``grid`` unless a pair of integers."""
    try:
        rows, cols = (operator.index(g) for g in grid)
    except (TypeError, ValueError):
        raise ValueError(f"grid must be a pair of integers (rows, cols), got {grid!r}") from None
    return rows, cols


@lru_cache(maxsize=None)
def _grid_tables(rows: int, cols: int):
    arcs = grid_arcs(rows, cols)
    index = {a: k for k, a in enumerate(arcs)}
    n = rows * cols
    pred = -np.ones((n, 2), np.int32)  # (left, up) predecessor nodes
    arc = np.zeros((n, 2), np.int32)
    for v in range(n):
        i, j = divmod(v, cols)
        if j > 0:
            pred[v, 0], arc[v, 0] = v - 1, index[(v - 1, v)]
        if i > 0:
            pred[v, 1], arc[v, 1] = v - cols, index[(v - cols, v)]
    return pred, arc


def grid_shortest_path(
    cost: Float[ArrayLike, " arcs"], grid: tuple[int, int] = (5, 5)
) -> Float[Array, " arcs"]:
    """Indicator of the shortest top-left to bottom-right path on a ``grid`` DAG.

    Args:
      cost: ``(num_arcs,)`` arc costs in :func:`grid_arcs` order (40 for the 5x5 grid).
        Any sign is allowed (the graph is acyclic).
      grid: ``(rows, cols)``.

    Returns:
      ``(num_arcs,)`` 0/1 vector of the arcs on the path (ties go to the leftward arc); NaN
      if a cost is NaN.
    """
    rows, cols = _grid_dims(grid)
    pred, arc = _grid_tables(rows, cols)
    cost = jnp.asarray(cost)
    if cost.shape != (len(grid_arcs(rows, cols)),):
        raise ValueError(
            f"cost must have shape ({len(grid_arcs(rows, cols))},) for grid {grid}, got {cost.shape}"
        )
    dtype = jnp.result_type(cost.dtype, float)
    cost = cost.astype(dtype)
    n = rows * cols
    inf = jnp.asarray(jnp.inf, dtype)
    pred_j, arc_j = jnp.asarray(pred), jnp.asarray(arc)

    def relax(dist, v):
        cand = jnp.where(pred_j[v] >= 0, dist[jnp.maximum(pred_j[v], 0)] + cost[arc_j[v]], inf)
        choice = jnp.argmin(cand).astype(jnp.int32)
        best = jnp.where(v == 0, jnp.zeros((), dtype), cand[choice])
        return dist.at[v].set(best), choice

    dist0 = jnp.full((n,), inf, dtype)
    _, choice = jax.lax.scan(relax, dist0, jnp.arange(n))

    def back(v, _):
        c = choice[v]
        return pred_j[v, c], arc_j[v, c]

    _, path_arcs = jax.lax.scan(back, jnp.asarray(n - 1, jnp.int32), None, length=rows + cols - 2)
    path = jnp.zeros(cost.shape, dtype).at[path_arcs].set(1.0)
    return jnp.where(jnp.any(jnp.isnan(cost)), jnp.nan, path)


def _greedy_fill(order_key, size, budget, eligible):
    """Fill items in decreasing ``order_key`` (eligible ones only), each up to ``size``, until
    ``budget`` is spent. Returns the filled amounts."""
    order = jnp.argsort(-jnp.where(eligible, order_key, -jnp.inf))
    size_sorted = jnp.where(eligible, size, 0.0)[order]
    before = jnp.cumsum(size_sorted) - size_sorted
    amount_sorted = jnp.clip(budget - before, 0.0, size_sorted)
    return jnp.zeros_like(size).at[order].set(amount_sorted)


def fractional_knapsack(
    cost: Float[ArrayLike, " n"], weights: Float[ArrayLike, " n"], capacity: Float[ArrayLike, ""]
) -> Float[Array, " n"]:
    """argmin c^T w s.t. weights^T w <= capacity, 0 <= w <= 1 (item values are ``-c``).

    Items with positive value ``-c_i`` are taken in decreasing value/weight order; the last
    one fractionally. ``weights`` must be positive and finite and ``capacity >= 0``: concrete
    arguments that break this raise ``ValueError`` naming them; traced ones, and a NaN cost,
    give a NaN decision.
    """
    cost = jnp.asarray(cost)
    dtype = jnp.result_type(cost.dtype, float)
    cost = cost.astype(dtype)
    weights = jnp.asarray(weights).astype(dtype)
    if cost.ndim != 1:
        raise ValueError(f"cost must be a vector (n,), got shape {cost.shape}")
    if weights.shape != cost.shape:
        raise ValueError(f"weights must have the shape of cost {cost.shape}, got {weights.shape}")
    check_scalar(capacity, "capacity")
    capacity = jnp.asarray(capacity, dtype)
    bad_weights = ~jnp.all(jnp.isfinite(weights) & (weights > 0))
    bad_capacity = ~((capacity >= 0) & (capacity < jnp.inf))
    for bad, name in ((bad_weights, "weights"), (bad_capacity, "capacity")):
        if is_concrete(bad) and bool(bad):
            raise ValueError(f"{name} must be {'positive and finite' if name == 'weights' else '>= 0 and finite'}")
    value = -cost
    filled = _greedy_fill(value / weights, weights, capacity, value > 0)
    invalid = bad_weights | bad_capacity | jnp.any(jnp.isnan(cost))
    return jnp.where(invalid, jnp.nan, filled / weights)


def box_budget(
    cost: Float[ArrayLike, " n"],
    lower: Float[ArrayLike, " n"],
    upper: Float[ArrayLike, " n"],
    total: Float[ArrayLike, ""],
) -> Float[Array, " n"]:
    """argmin c^T w s.t. lower <= w <= upper, sum(w) = total: start at ``lower`` and spend
    ``total - sum(lower)`` on the cheapest coordinates first.

    The bounds must be finite and the total feasible, sum(lower) <= total <= sum(upper) (and
    lower <= upper): concrete arguments that break this raise ``ValueError`` naming them;
    traced ones give a NaN decision (there is no point of the set to return), as does a NaN
    cost.
    """
    cost = jnp.asarray(cost)
    dtype = jnp.result_type(cost.dtype, float)
    cost = cost.astype(dtype)
    lower = jnp.asarray(lower).astype(dtype)
    upper = jnp.asarray(upper).astype(dtype)
    if cost.ndim != 1:
        raise ValueError(f"cost must be a vector (n,), got shape {cost.shape}")
    if lower.shape != cost.shape or upper.shape != cost.shape:
        raise ValueError(f"lower and upper must have the shape of cost {cost.shape}")
    check_scalar(total, "total")
    total = jnp.asarray(total, dtype)
    lo_sum, hi_sum = jnp.sum(lower), jnp.sum(upper)
    slack = 1e-6 * (1.0 + jnp.abs(lo_sum) + jnp.abs(hi_sum))
    finite = jnp.all(jnp.isfinite(lower)) & jnp.all(jnp.isfinite(upper))
    feasible = (total >= lo_sum - slack) & (total <= hi_sum + slack) & jnp.all(lower <= upper) & finite
    if all(is_concrete(a) for a in (lower, upper, total)) and not bool(feasible):
        for name, bound in (("lower", lower), ("upper", upper)):
            if not bool(jnp.all(jnp.isfinite(bound))):
                raise ValueError(f"{name} must be finite")
        if not bool(jnp.all(lower <= upper)):
            raise ValueError("upper must be >= lower elementwise")
        raise ValueError(
            f"total must lie in [sum(lower), sum(upper)] = [{float(lo_sum)}, {float(hi_sum)}], "
            f"got {float(total)}: the budget cannot be met"
        )
    extra = _greedy_fill(-cost, upper - lower, total - lo_sum, jnp.ones(cost.shape, bool))
    return jnp.where(feasible & ~jnp.any(jnp.isnan(cost)), lower + extra, jnp.nan)

"""Fractional knapsack (Gen-DFL Appendix B.2), and PyEPO's knapsack generator.

Gen-DFL's knapsack reuses the portfolio's factor-model generator for the item values c
(:class:`~tailjax.dfl.problems.portfolio.FactorReturnModel`, sigma = 20 by default) and
decides

    min_w CVaR_alpha[-c^T w]   s.t.  w in [0, 1]^n,  p^T w <= capacity.

The item weights p are drawn as in PyEPO (``choice(range(300, 800)) / 100``) after the
factor-model draws, from the same ``RandomState(seed)``; ``capacity = capacity_ratio * sum(p)``
(the paper does not print its capacity; 0.25 by default, documented choice).

:func:`knapsack_gen_data` reproduces ``pyepo.data.knapsack.genData`` (PyEPO 2.2) exactly,
whose values are ceil(5 ((B x / sqrt(p) + 3)^deg + 1) / 3.5^deg * eps);
:func:`pyepo_knapsack_instance` gives that data with the fractional oracle or, with
``binary=True``, PyEPO's default 0-1 knapsack solved exactly
(:mod:`tailjax.dfl.problems.binary_knapsack`).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from tailjax.dfl.problems.base import ProblemInstance, make_problem
from tailjax.dfl.problems.binary_knapsack import binary_knapsack
from tailjax.dfl.problems.portfolio import FactorReturnModel, _check, _draw_factor_model, _intercept
from tailjax.dfl.problems.shortest_path import PolynomialCostModel
from tailjax.layers import fractional_knapsack, make_polytope

__all__ = [
    "knapsack_gen_data",
    "knapsack_problem",
    "knapsack_instance",
    "pyepo_knapsack_instance",
]


def knapsack_gen_data(
    num_data: int,
    num_features: int,
    num_items: int,
    dim: int = 1,
    deg: int = 1,
    noise_width: float = 0.0,
    seed: int = 135,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Same arrays as ``pyepo.data.knapsack.genData`` (PyEPO 2.2): ``(weights (dim, m),
    x (n, p), c (n, m) float32)``."""
    _check(num_data, num_features, num_items, deg, noise_width, "num_items")
    if not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    B, x, c, weights = _draw_pyepo(num_data, num_features, num_items, dim, deg, noise_width, seed)
    return weights, x, c


def _draw_pyepo(num_data, num_features, num_items, dim, deg, noise_width, seed):
    rnd = np.random.RandomState(seed)
    n, p, m = num_data, num_features, num_items
    weights = rnd.choice(range(300, 800), size=(dim, m)) / 100
    B = rnd.binomial(1, 0.5, (m, p))
    x = rnd.normal(0, 1, (n, p))
    c = (x @ B.T / np.sqrt(p) + 3) ** deg + 1
    c *= 5
    c /= 3.5**deg
    eps = rnd.uniform(1 - noise_width, 1 + noise_width, (n, m))
    c *= eps
    return B, x, np.ceil(c).astype(np.float32), weights


def knapsack_problem(
    weights: Float[ArrayLike, " n"], capacity: float, *, reg: float = 0.0
):
    """Fractional knapsack: f(c, w) = -c^T w, w in [0, 1]^n, weights^T w <= capacity."""
    dtype = jnp.result_type(float)
    weights = jnp.asarray(weights, dtype)
    if weights.ndim != 1 or weights.shape[0] == 0:
        raise ValueError(f"weights must be a non-empty vector, got shape {weights.shape}")
    if not float(capacity) >= 0:
        raise ValueError(f"capacity must be >= 0, got {capacity}")
    n = weights.shape[0]
    poly = make_polytope(
        jnp.zeros((n,), dtype), jnp.ones((n,), dtype), ineq_matrix=weights[None, :],
        ineq_rhs=jnp.asarray([capacity], dtype),
    )
    return make_problem(poly, sign=-1.0, reg=reg)


def _oracle(weights, capacity):
    def oracle(c):
        return fractional_knapsack(-jnp.asarray(c), weights, capacity)

    return oracle


def knapsack_instance(
    num_data: int = 320,
    num_features: int = 5,
    num_items: int = 50,
    deg: int = 1,
    noise: float = 20.0,
    seed: int = 135,
    *,
    capacity_ratio: float = 0.25,
    paper_intercept: bool = False,
    reg: float = 0.0,
) -> ProblemInstance:
    """Gen-DFL's knapsack: factor-model values (as the portfolio), PyEPO-style weights."""
    _check(num_data, num_features, num_items, deg, noise, "num_items")
    if not 0 < capacity_ratio <= 1:
        raise ValueError(f"capacity_ratio must lie in (0, 1], got {capacity_ratio}")
    rnd = np.random.RandomState(seed)
    a = _intercept(deg, paper_intercept)
    B, L, x, r = _draw_factor_model(rnd, num_data, num_features, num_items, deg, noise, a)
    item_weights = rnd.choice(range(300, 800), size=num_items) / 100
    capacity = float(capacity_ratio * item_weights.sum())
    dtype = jnp.result_type(float)
    model = FactorReturnModel(jnp.asarray(B, dtype), jnp.asarray(L, dtype), int(deg), float(noise), a)
    problem = knapsack_problem(item_weights, capacity, reg=reg)
    oracle = _oracle(jnp.asarray(item_weights, dtype), capacity)
    return ProblemInstance("knapsack", problem, model, oracle, x, r.astype(np.float32))


def pyepo_knapsack_instance(
    num_data: int = 320,
    num_features: int = 5,
    num_items: int = 32,
    deg: int = 1,
    noise_width: float = 0.5,
    seed: int = 135,
    *,
    capacity: float = 20.0,
    reg: float = 0.0,
    binary: bool = False,
) -> ProblemInstance:
    """PyEPO's one-dimensional knapsack data (integer values) with its true p(c|x).

    ``binary=False``: the fractional relaxation's oracle (PyEPO's ``relax()``);
    ``binary=True``: PyEPO's default 0-1 knapsack, solved exactly by
    :func:`~tailjax.dfl.problems.binary_knapsack` (a DP over capacities in hundredths, the
    unit of PyEPO's weights). The ``problem`` (and so the CVaR decision layer) is the
    relaxation either way.
    """
    _check(num_data, num_features, num_items, deg, noise_width, "num_items")
    B, x, c, weights = _draw_pyepo(num_data, num_features, num_items, 1, deg, noise_width, seed)
    dtype = jnp.result_type(float)
    model = PolynomialCostModel(jnp.asarray(B, dtype), int(deg), float(noise_width), 5.0, True)
    problem = knapsack_problem(weights[0], capacity, reg=reg)
    if binary:
        w0, cap = np.asarray(weights[0]), float(capacity)
        oracle = lambda c: binary_knapsack(c, w0, cap, weight_unit=0.01)  # noqa: E731
        return ProblemInstance("pyepo_knapsack_binary", problem, model, oracle, x, c)
    oracle = _oracle(jnp.asarray(weights[0], dtype), float(capacity))
    return ProblemInstance("pyepo_knapsack", problem, model, oracle, x, c)

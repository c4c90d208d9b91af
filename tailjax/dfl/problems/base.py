"""The decision problem shared by every DFL method: a realised cost, its feasible set, and the
differentiable decisions.

A :class:`DecisionProblem` is a NamedTuple of arrays (a pytree; it passes through ``jit``
and ``vmap``)::

    f(c, w) = sign * c^T w + w^T P w,      w in W (a Polytope),

``sign = -1`` where ``c`` are returns/values that are maximised (portfolio, knapsack),
``+1`` for costs (shortest path, energy); ``P`` is the portfolio's ``Sigma`` (zero
otherwise); ``reg`` is the QPTL regulariser used by the *training* decision layers (the
evaluation decisions and the true optimum use ``reg = 0`` unless told otherwise).

A :class:`ProblemInstance` bundles a problem with the true conditional distribution
p(c|x) (``model.sample(key, x, num_samples)``, ``model.mean(x)``), an exact oracle, and a
generated data set; the constructors in :mod:`tailjax.dfl.problems` return one.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import check_positive
from tailjax.layers import Polytope, cvar_decision, point_decision

__all__ = [
    "DecisionProblem",
    "ProblemInstance",
    "make_problem",
    "objective",
    "decision",
    "point_decision_of",
    "qp_oracle",
    "exact_oracle",
]


class DecisionProblem(NamedTuple):
    """f(c, w) = sign * c^T w + w^T P w over ``polytope``; see the module docstring."""

    polytope: Polytope
    quadratic: Array  # (d, d) PSD
    sign: Array  # () +1 costs, -1 returns/values
    reg: Array  # () QPTL regulariser of the training layers (>= 0)

    @property
    def dim(self) -> int:
        return self.polytope.lower.shape[-1]


class ProblemInstance(NamedTuple):
    """A problem, its true p(c|x), an exact oracle and a data set (host-side bundle).

    ``oracle(c)`` returns argmin_{w in W} f(c, w) for one cost vector ``c: (d,)`` exactly
    (DP, sorting or QP), with no gradient. ``features: (n, p)``, ``costs: (n, d)`` are
    numpy arrays drawn from ``model``.
    """

    name: str
    problem: DecisionProblem
    model: Any
    oracle: Callable[[Array], Array]
    features: np.ndarray
    costs: np.ndarray


def make_problem(
    polytope: Polytope,
    *,
    sign: float = 1.0,
    quadratic: Float[ArrayLike, "d d"] | None = None,
    reg: float = 0.0,
) -> DecisionProblem:
    """Build a :class:`DecisionProblem`; ``ValueError`` naming the argument on bad input."""
    d = polytope.lower.shape[-1]
    dtype = polytope.lower.dtype
    if float(sign) not in (1.0, -1.0):
        raise ValueError(f"sign must be +1 (costs) or -1 (returns), got {sign}")
    check_positive(reg, "reg", allow_zero=True)
    quadratic = jnp.zeros((d, d), dtype) if quadratic is None else jnp.asarray(quadratic, dtype)
    if quadratic.shape != (d, d):
        raise ValueError(f"quadratic must have shape ({d}, {d}), got {quadratic.shape}")
    return DecisionProblem(polytope, quadratic, jnp.asarray(sign, dtype), jnp.asarray(reg, dtype))


def objective(
    problem: DecisionProblem, c: Float[ArrayLike, "... d"], w: Float[ArrayLike, " d"]
) -> Float[Array, "..."]:
    """Realised cost f(c, w); ``c: (..., d)`` and ``w: (d,)`` give ``(...)`` (NaN where a
    sample has a NaN entry)."""
    c = jnp.asarray(c)
    if c.ndim == 0 or c.shape[-1] != problem.dim:
        raise ValueError(f"c must have last axis {problem.dim} (the problem's dimension), got shape {c.shape}")
    w = jnp.asarray(w)
    if w.shape != (problem.dim,):
        raise ValueError(f"w must have shape ({problem.dim},) (one decision), got {w.shape}")
    dtype = jnp.result_type(c.dtype, float)
    c = c.astype(dtype)
    w = w.astype(dtype)
    return problem.sign.astype(dtype) * (c @ w) + w @ (problem.quadratic.astype(dtype) @ w)


def _reg(problem, reg):
    return problem.reg if reg is None else reg


def decision(
    problem: DecisionProblem,
    samples: Float[ArrayLike, "K d"],
    tail_prob: float,
    *,
    reg: float | Array | None = None,
    weights: Float[ArrayLike, " K"] | None = None,
    iterations: int = 40,
) -> Float[Array, " d"]:
    """CVaR-SAA decision argmin_w CVaR_{tail_prob}[f(c, w)] (+ reg ||w||^2) over ``samples``.

    ``tail_prob`` = Gen-DFL's alpha (1: mean cost). ``reg`` defaults to ``problem.reg``;
    pass ``reg=0.`` for evaluation decisions. One instance: ``jax.vmap`` over instances.
    """
    samples = jnp.asarray(samples)
    if samples.ndim != 2 or samples.shape[0] == 0 or samples.shape[1] != problem.dim:
        raise ValueError(f"samples must have shape (K >= 1, {problem.dim}), got {samples.shape}")
    costs = problem.sign.astype(samples.dtype) * samples
    return cvar_decision(
        costs, problem.polytope, tail_prob, quadratic=problem.quadratic,
        reg=_reg(problem, reg), weights=weights, iterations=iterations,
    )


def point_decision_of(
    problem: DecisionProblem,
    c: Float[ArrayLike, " d"],
    *,
    reg: float | Array | None = None,
    iterations: int = 40,
) -> Float[Array, " d"]:
    """argmin_w f(c, w) (+ reg ||w||^2) for a point cost ``c: (d,)`` (differentiable)."""
    c = jnp.asarray(c)
    return point_decision(
        problem.sign.astype(c.dtype) * c, problem.polytope, quadratic=problem.quadratic,
        reg=_reg(problem, reg), iterations=iterations,
    )


def qp_oracle(problem: DecisionProblem) -> Callable[[Array], Array]:
    """Exact oracle by the interior-point QP (reg 0, no gradient), for problems without a
    combinatorial one (the portfolio)."""

    def oracle(c):
        return jax.lax.stop_gradient(point_decision_of(problem, c, reg=0.0))

    return oracle


def exact_oracle(name: str, problem: DecisionProblem) -> Callable[[Array], Array]:
    """The exact oracle of a named problem as a pure function of the problem's arrays, so
    that it can be built inside ``jit`` from a traced ``problem`` (one compilation serves
    every seed/instance of the same shapes).

    ``"shortest_path"`` (5x5 grid DP), ``"knapsack"`` (sorting; the polytope's single
    inequality row), ``"energy"`` (cheapest periods first; the single equality row),
    ``"portfolio"`` or anything else (the interior-point QP).
    """
    from tailjax.layers import box_budget, fractional_knapsack, grid_shortest_path

    poly = problem.polytope
    if name == "shortest_path":
        return lambda c: grid_shortest_path(c, (5, 5))
    if name == "knapsack":
        return lambda c: fractional_knapsack(-c, poly.ineq_matrix[0], poly.ineq_rhs[0])
    if name == "energy":
        return lambda c: box_budget(c, poly.lower, poly.upper, poly.eq_rhs[0])
    return qp_oracle(problem)


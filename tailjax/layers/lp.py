"""Linear programs on the interior-point engine of :mod:`tailjax.layers.qp`, and the optimal
value of an LP with its envelope-theorem derivative.

    minimise  c^T x   subject to   A x = b,   G x <= h

:func:`solve_lp` is :func:`~tailjax.layers.qp.solve_qp` with ``quad = 0``: the same
arguments, in the same order, less the first. :func:`lp_value` returns c^T x*, and its
derivative comes from the optimal multipliers (y* for the equalities, z* >= 0 for the
inequalities) rather than from the solution map:

    dV = dc^T x* + z*^T (dG x* - dh) + y*^T (dA x* - db),

the envelope theorem: the exact gradient where the LP is non-degenerate, and where it is
not, a supergradient in c (V is concave in c) and a subgradient in h (V is convex in h). The solution
x* of an LP is piecewise constant in c, so differentiating it is rarely what is wanted;
the value is (two-stage recourse costs, master problems of cutting-plane methods).

Every variable must be bounded by some row of G or A (the engine's full-column-rank
condition); infeasible or unbounded data leave ``converged = False`` (and NaN, by
default) in :func:`solve_lp`, and make :func:`lp_value` NaN (or raise, with ``on_failure="raise"``).
One LP per call; ``jax.vmap`` for a batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from tailjax.layers.ipm import full_precision
from tailjax.layers.qp import QPSolution, solve_qp
from tailjax.layers.scaling import check_on_failure, on_failure_result

__all__ = ["solve_lp", "lp_value"]


def _as_float(c):
    c = jnp.asarray(c)
    return c if jnp.issubdtype(c.dtype, jnp.floating) else c.astype(jnp.result_type(float))


def _arrays(lin, eq_matrix, eq_rhs, ineq_matrix, ineq_rhs):
    c = _as_float(lin)
    if c.ndim != 1 or c.shape[0] == 0:
        raise ValueError(f"lin must be a non-empty vector, got shape {c.shape}")
    n, dt = c.shape[0], c.dtype
    A = jnp.zeros((0, n), dt) if eq_matrix is None else jnp.asarray(eq_matrix, dt)
    b = jnp.zeros((0,), dt) if eq_rhs is None else jnp.asarray(eq_rhs, dt)
    return c, A, b, jnp.asarray(ineq_matrix, dt), jnp.asarray(ineq_rhs, dt)


@full_precision
def solve_lp(
    lin: Float[ArrayLike, " n"],
    eq_matrix: Float[ArrayLike, "m_eq n"] | None,
    eq_rhs: Float[ArrayLike, " m_eq"] | None,
    ineq_matrix: Float[ArrayLike, "m n"],
    ineq_rhs: Float[ArrayLike, " m"],
    *,
    iterations: int = 100,
    tol: float | None = None,
    on_failure: str = "nan",
) -> QPSolution:
    """Solve min c'x s.t. Ax = b, Gx <= h (:func:`~tailjax.layers.qp.solve_qp` with Q = 0).

    Args:
      lin: ``(n,)`` cost ``c``.
      eq_matrix, eq_rhs: ``(m_eq, n)`` and ``(m_eq,)``, or ``None`` for no equality.
      ineq_matrix, ineq_rhs: ``(m, n)`` and ``(m,)`` with ``m >= 1``.
      iterations: maximum interior-point iterations (static).
      tol: relative tolerance (default :func:`~tailjax.layers.qp.default_tol`).
      on_failure: as in :func:`~tailjax.layers.qp.solve_qp` (NaN where not converged).

    Returns:
      :class:`~tailjax.layers.qp.QPSolution`; the optimal value is ``lin @ primal``.
    """
    c, A, b, G, h = _arrays(lin, eq_matrix, eq_rhs, ineq_matrix, ineq_rhs)
    return solve_qp(jnp.zeros((c.shape[0],) * 2, c.dtype), c, A, b, G, h, iterations=iterations, tol=tol,
                    on_failure=on_failure)


@jax.custom_jvp
def _value(c, A, b, G, h):
    sol = solve_lp(c, A, b, G, h, on_failure="ignore")
    return c @ sol.primal, sol.converged


@_value.defjvp
def _value_jvp(primals, tangents):
    c, A, b, G, h = primals
    dc, dA, db, dG, dh = tangents
    sol = solve_lp(c, A, b, G, h, on_failure="ignore")
    x, y, z = sol.primal, sol.eq_dual, sol.ineq_dual
    dv = dc @ x + z @ (dG @ x - dh) + y @ (dA @ x - db)
    return (c @ x, sol.converged), (dv, np.zeros((), jax.dtypes.float0))


@full_precision
def lp_value(
    lin: Float[ArrayLike, " n"],
    eq_matrix: Float[ArrayLike, "m_eq n"] | None,
    eq_rhs: Float[ArrayLike, " m_eq"] | None,
    ineq_matrix: Float[ArrayLike, "m n"],
    ineq_rhs: Float[ArrayLike, " m"],
    *,
    on_failure: str = "nan",
) -> Float[Array, ""]:
    """Optimal value of min c'x s.t. Ax = b, Gx <= h; differentiable in all five arrays.

    Arguments as in :func:`solve_lp`. Forward and reverse mode (``jax.jvp``, ``jax.grad``,
    under ``jit`` and ``vmap``) use the envelope theorem on the optimal multipliers (see
    the module docstring); no derivative of the solver is taken.

    ``on_failure``: where the solver does not converge (an infeasible or unbounded LP),
    ``"nan"`` (default) returns NaN, ``"raise"`` fails a ``checkify`` check (an error
    outside ``jit``), ``"ignore"`` returns the last iterate's value
    (:mod:`tailjax.layers.scaling`).
    """
    check_on_failure(on_failure)
    value, converged = _value(*_arrays(lin, eq_matrix, eq_rhs, ineq_matrix, ineq_rhs))
    return on_failure_result(value, converged, on_failure, "lp_value")

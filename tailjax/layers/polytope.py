"""Feasible sets of the decision layers: a bounded polytope

    W = {w in R^d : lower <= w <= upper,  eq_matrix w = eq_rhs,  ineq_matrix w <= ineq_rhs}.

A :class:`Polytope` is a NamedTuple of arrays (a pytree): it passes through ``jit`` and can be
``vmap``-ed when instances differ in their constraints. Bounds must be finite (every problem
in :mod:`tailjax.dfl.problems` is boxed), which keeps the decision LPs bounded.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import check_positive, is_concrete

__all__ = ["Polytope", "make_polytope", "check_feasible", "polytope_constraints"]


class Polytope(NamedTuple):
    """Box, equality and inequality constraints on a decision of size ``d``."""

    lower: Array  # (d,)
    upper: Array  # (d,)
    eq_matrix: Array  # (m_eq, d)
    eq_rhs: Array  # (m_eq,)
    ineq_matrix: Array  # (m_ub, d)
    ineq_rhs: Array  # (m_ub,)

    @property
    def dim(self) -> int:
        return self.lower.shape[-1]


def make_polytope(
    lower: Float[ArrayLike, " d"],
    upper: Float[ArrayLike, " d"],
    eq_matrix: Float[ArrayLike, "m_eq d"] | None = None,
    eq_rhs: Float[ArrayLike, " m_eq"] | None = None,
    ineq_matrix: Float[ArrayLike, "m_ub d"] | None = None,
    ineq_rhs: Float[ArrayLike, " m_ub"] | None = None,
    *,
    check: bool = True,
) -> Polytope:
    """Build and validate a :class:`Polytope`.

    Raises ``ValueError`` naming the argument for mismatched shapes, non-finite or crossed
    bounds, and (with ``check=True`` and concrete data) an empty polytope, detected by a
    phase-one LP (:func:`check_feasible`).
    """
    lower = jnp.asarray(lower)
    dtype = jnp.result_type(lower.dtype, float)
    lower = lower.astype(dtype)
    upper = jnp.asarray(upper).astype(dtype)
    if lower.ndim != 1 or lower.shape[0] == 0:
        raise ValueError(f"lower must be a non-empty vector, got shape {lower.shape}")
    d = lower.shape[0]
    if upper.shape != (d,):
        raise ValueError(f"upper must have shape ({d},), got {upper.shape}")

    def pair(mat, rhs, mname, rname):
        if (mat is None) != (rhs is None):
            raise ValueError(f"give both {mname} and {rname} or neither")
        if mat is None:
            return jnp.zeros((0, d), dtype), jnp.zeros((0,), dtype)
        mat = jnp.asarray(mat).astype(dtype)
        rhs = jnp.asarray(rhs).astype(dtype)
        if mat.ndim == 1:
            mat = mat[None, :]
        if mat.ndim != 2 or mat.shape[1] != d:
            raise ValueError(f"{mname} must have shape (m, {d}), got {mat.shape}")
        rhs = jnp.reshape(rhs, (-1,)) if rhs.ndim == 0 else rhs
        if rhs.shape != (mat.shape[0],):
            raise ValueError(f"{rname} must have shape ({mat.shape[0]},), got {rhs.shape}")
        return mat, rhs

    eq_matrix, eq_rhs = pair(eq_matrix, eq_rhs, "eq_matrix", "eq_rhs")
    ineq_matrix, ineq_rhs = pair(ineq_matrix, ineq_rhs, "ineq_matrix", "ineq_rhs")
    poly = Polytope(lower, upper, eq_matrix, eq_rhs, ineq_matrix, ineq_rhs)
    if is_concrete(lower) and is_concrete(upper):
        lo, hi = np.asarray(lower), np.asarray(upper)
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise ValueError("lower and upper must be finite (decision sets are boxed)")
        if np.any(lo > hi):
            raise ValueError("upper must be >= lower elementwise: the box is empty")
    if check and all(is_concrete(a) for a in poly):
        check_feasible(poly)
    return poly


def _check_shapes(poly: Polytope) -> None:
    """``ValueError`` naming the field whose shape does not fit ``lower: (d,)``."""
    lower = jnp.shape(poly.lower)
    if len(lower) != 1 or lower[0] == 0:
        raise ValueError(f"lower must be a non-empty vector, got shape {lower}")
    d = lower[0]
    if jnp.shape(poly.upper) != (d,):
        raise ValueError(f"upper must have shape ({d},), got {jnp.shape(poly.upper)}")
    for mname, rname in (("eq_matrix", "eq_rhs"), ("ineq_matrix", "ineq_rhs")):
        mat, rhs = jnp.shape(getattr(poly, mname)), jnp.shape(getattr(poly, rname))
        if len(mat) != 2 or mat[1] != d:
            raise ValueError(f"{mname} must have shape (m, {d}), got {mat}")
        if rhs != (mat[0],):
            raise ValueError(f"{rname} must have shape ({mat[0]},), got {rhs}")


def polytope_constraints(poly: Polytope) -> tuple[Array, Array, Array, Array]:
    """(A, b, G, h) of the polytope with the box written as inequality rows (``ValueError``
    naming a field of the wrong shape)."""
    _check_shapes(poly)
    d = poly.lower.shape[-1]
    eye = jnp.eye(d, dtype=poly.lower.dtype)
    G = jnp.concatenate([eye, -eye, poly.ineq_matrix], axis=0)
    h = jnp.concatenate([poly.upper, -poly.lower, poly.ineq_rhs], axis=0)
    return poly.eq_matrix, poly.eq_rhs, G, h


def check_feasible(poly: Polytope, *, tol: float = 1e-7) -> None:
    """Raise ``ValueError`` if the (concrete) polytope is empty.

    Solves the phase-one LP min 1't over (w, t >= 0) with the equality and inequality rows
    relaxed by t, in float64 with scipy's HiGHS (host side, concrete data only). Fields of
    the wrong shape, non-finite data or ``tol <= 0`` raise ``ValueError`` naming them.
    """
    _check_shapes(poly)
    check_positive(tol, "tol")
    for name in Polytope._fields:
        if not np.all(np.isfinite(np.asarray(getattr(poly, name)))):
            raise ValueError(f"{name} must be finite")
    lo = np.asarray(poly.lower, np.float64)
    hi = np.asarray(poly.upper, np.float64)
    A = np.asarray(poly.eq_matrix, np.float64)
    b = np.asarray(poly.eq_rhs, np.float64)
    G = np.asarray(poly.ineq_matrix, np.float64)
    h = np.asarray(poly.ineq_rhs, np.float64)
    m_eq, m_ub, d = A.shape[0], G.shape[0], lo.shape[0]
    if m_eq + m_ub == 0:
        return
    # variables (w, t_eq_plus, t_eq_minus, t_ub)
    nt = 2 * m_eq + m_ub
    cost = np.concatenate([np.zeros(d), np.ones(nt)])
    A_eq = np.hstack([A, np.eye(m_eq), -np.eye(m_eq), np.zeros((m_eq, m_ub))])
    A_ub = np.hstack([G, np.zeros((m_ub, 2 * m_eq)), -np.eye(m_ub)])
    bounds_lo = np.concatenate([lo, np.zeros(nt)])
    scale = 1.0 + max(np.abs(b).max(initial=0.0), np.abs(h).max(initial=0.0))
    bounds_hi = np.concatenate([hi, np.full(nt, 1e3 * scale + np.abs(G).sum() + np.abs(A).sum())])
    from scipy.optimize import linprog  # scipy ships with jax

    res = linprog(
        cost,
        A_ub=A_ub if m_ub else None,
        b_ub=h if m_ub else None,
        A_eq=A_eq if m_eq else None,
        b_eq=b if m_eq else None,
        bounds=list(zip(bounds_lo, bounds_hi)),
        method="highs",
    )
    value = res.fun
    if value > tol * scale:
        raise ValueError(
            f"constraints are infeasible: the polytope is empty (phase-one violation {value:.3g})"
        )

"""A dense convex QP, min 1/2 x'Qx + q'x s.t. Ax = b, Gx <= h, solved by the interior-point
engine of :mod:`tailjax.layers.ipm` and differentiable in all six arrays (implicit
differentiation with jaxopt).

``Q`` must be positive semidefinite and ``[Q; A; G]`` of full column rank (every variable
bounded by some constraint); ``A`` of full row rank. One instance per call; ``jax.vmap``
for a batch.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from tailjax.layers.ipm import default_tol, full_precision, ipm_solve
from tailjax.layers.scaling import check_on_failure, cost_normalisation, on_failure_result

__all__ = ["QPSolution", "solve_qp", "default_tol", "DenseQP", "dense_factor", "dense_solve"]


class QPSolution(NamedTuple):
    """Solution of :func:`solve_qp`; ``primal``, ``eq_dual`` and ``ineq_dual`` carry gradients."""

    primal: Array  # (n,)
    eq_dual: Array  # (m_eq,)
    ineq_dual: Array  # (m_ineq,)
    slack: Array  # (m_ineq,)  h - G x (>= 0 up to tol)
    converged: Array  # () bool: tolerances met, or a stalled solve's best iterate within 10x of
    #                   them (ipm.REDUCED_ACCURACY); False for infeasible/unbounded data
    gap: Array  # () slack^T ineq_dual
    iterations: Array  # () int: iterations taken


class DenseFactor(NamedTuple):
    chol_h: Array
    h_inv_at: Array
    chol_s: Array


def dense_factor(H, A, ridge, scale) -> DenseFactor:
    """Cholesky of H (+ relative and absolute ridge) and of the Schur complement A H^-1 A'."""
    chol_h = jnp.linalg.cholesky(H + jnp.diag(ridge * (jnp.diagonal(H) + scale)))
    h_inv_at = jax.scipy.linalg.cho_solve((chol_h, True), A.T)
    S = A @ h_inv_at
    s_diag = jnp.diagonal(S)
    chol_s = jnp.linalg.cholesky(S + jnp.diag(ridge * (s_diag + jnp.max(s_diag, initial=0.0))))
    return DenseFactor(chol_h, h_inv_at, chol_s)


def dense_solve(f: DenseFactor, A, r1, r2):
    """[[H, A'], [A, 0]] [dx; dy] = [r1; r2] from :func:`dense_factor`."""
    h_inv_r1 = jax.scipy.linalg.cho_solve((f.chol_h, True), r1)
    if A.shape[0] == 0:
        return h_inv_r1, jnp.zeros((0,), r1.dtype)
    dy = jax.scipy.linalg.cho_solve((f.chol_s, True), A @ h_inv_r1 - r2)
    return h_inv_r1 - f.h_inv_at @ dy, dy


class DenseQP(NamedTuple):
    """Dense structure for :func:`tailjax.layers.ipm.ipm_solve`."""

    Q: Array
    q: Array
    A: Array
    b: Array
    G: Array
    h: Array

    lin = property(lambda self: self.q)
    eq_rhs = property(lambda self: self.b)
    ineq_rhs = property(lambda self: self.h)

    def quad_mv(self, x):
        return self.Q @ x

    def eq_mv(self, x):
        return self.A @ x

    def eq_rmv(self, y):
        return self.A.T @ y

    def ineq_mv(self, x):
        return self.G @ x

    def ineq_rmv(self, z):
        return self.G.T @ z

    def factor(self, w, ridge):
        H = self.Q + (self.G.T * w) @ self.G
        scale = 1.0 + jnp.max(jnp.abs(jnp.diagonal(self.Q))) + jnp.max(jnp.sum(self.G**2, axis=0))
        return dense_factor(H, self.A, ridge, scale)

    def solve(self, f, r1, r2):
        return dense_solve(f, self.A, r1, r2)


def _check_shapes(Q, q, A, b, G, h):
    n = q.shape[-1] if q.ndim else None
    if q.ndim != 1 or n == 0:
        raise ValueError(f"lin must be a non-empty vector, got shape {q.shape}")
    if Q.shape != (n, n):
        raise ValueError(f"quad must have shape ({n}, {n}), got {Q.shape}")
    for mat, rhs, mname, rname in ((A, b, "eq_matrix", "eq_rhs"), (G, h, "ineq_matrix", "ineq_rhs")):
        if mat.ndim != 2 or mat.shape[1] != n:
            raise ValueError(f"{mname} must have shape (m, {n}), got {mat.shape}")
        if rhs.shape != (mat.shape[0],):
            raise ValueError(f"{rname} must have shape ({mat.shape[0]},), got {rhs.shape}")
    if G.shape[0] == 0:
        raise ValueError("ineq_matrix has no rows: bound every variable (the solver needs slacks)")


@full_precision
def solve_qp(
    quad: Float[ArrayLike, "n n"],
    lin: Float[ArrayLike, " n"],
    eq_matrix: Float[ArrayLike, "m_eq n"] | None,
    eq_rhs: Float[ArrayLike, " m_eq"] | None,
    ineq_matrix: Float[ArrayLike, "m n"],
    ineq_rhs: Float[ArrayLike, " m"],
    *,
    iterations: int = 40,
    tol: float | None = None,
    on_failure: str = "nan",
) -> QPSolution:
    """Solve min 1/2 x'Qx + q'x s.t. Ax = b, Gx <= h; differentiable in all six arrays.

    Args:
      quad: ``(n, n)`` positive semidefinite ``Q`` (zeros for an LP).
      lin: ``(n,)`` linear term ``q``.
      eq_matrix, eq_rhs: ``(m_eq, n)`` and ``(m_eq,)``; ``m_eq`` may be 0, or ``None`` for no
        equality (as in :func:`~tailjax.layers.solve_lp`).
      ineq_matrix, ineq_rhs: ``(m, n)`` and ``(m,)`` with ``m >= 1``.
      iterations: maximum interior-point iterations (static). 40 reaches ``tol`` on the problems
        of :mod:`tailjax.dfl.problems`; check ``converged``.
      tol: relative tolerance on gap and residuals (default :func:`default_tol`).
      on_failure: where the solver did not converge, ``"nan"`` (default) makes the primal,
        multipliers, slack and gap NaN, ``"raise"`` fails a ``checkify`` check, ``"ignore"``
        keeps the last iterate (as :func:`~tailjax.layers.cvar_decision`).

    Returns:
      :class:`QPSolution`. Infeasible or unbounded data (NaN data included) leave
      ``converged = False``.

    The objective is centred by the equality rows and scaled to order one inside the solver
    (:mod:`tailjax.layers.scaling`); the solution and multipliers are in the caller's units.
    """
    check_on_failure(on_failure)
    given = dict(quad=quad, lin=lin, eq_matrix=eq_matrix, eq_rhs=eq_rhs, ineq_matrix=ineq_matrix,
                 ineq_rhs=ineq_rhs)
    for name, a in given.items():
        if a is None and name not in ("eq_matrix", "eq_rhs"):
            raise ValueError(f"{name} must be an array, got None")
    arrays = {name: None if a is None else jnp.asarray(a) for name, a in given.items()}
    dtype = jnp.result_type(*[a.dtype for a in arrays.values() if a is not None], float)
    n = arrays["lin"].shape[-1] if arrays["lin"].ndim else 0  # a bad lin is named by _check_shapes
    empty = {"eq_matrix": (0, n), "eq_rhs": (0,)}  # None: no equality, as in solve_lp
    Q, q, A, b, G, h = [jnp.zeros(empty[name], dtype) if a is None else a.astype(dtype)
                        for name, a in arrays.items()]
    _check_shapes(Q, q, A, b, G, h)
    lam, shift, scale = cost_normalisation(
        q, lambda sh: jnp.mean((q - sh) ** 2), A, jnp.max(jnp.abs(Q))
    )
    x, y, z, done, it = ipm_solve(
        DenseQP(Q / scale, (q - shift) / scale, A, b, G, h), iterations=iterations, tol=tol
    )
    y, z = scale * y - lam, scale * z
    slack = h - G @ x
    x, y, z, slack, gap = on_failure_result((x, y, z, slack, slack @ z), done, on_failure, "solve_qp")
    return QPSolution(x, y, z, slack, done, gap, it)

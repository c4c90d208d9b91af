"""A dense convex QP solved by a fixed-budget primal-dual interior-point method, with
implicit differentiation through its KKT conditions (jaxopt ``root_vjp``).

Problem (one instance; ``jax.vmap`` for a batch)::

    min_x  1/2 x^T Q x + q^T x   s.t.  A x = b,  G x <= h.

``Q`` must be positive semidefinite and ``[Q; A; G]`` of full column rank (every variable
bounded by some constraint); ``A`` of full row rank. The solver is Mehrotra's
predictor-corrector on the slack form ``G x + s = h, s >= 0`` with multipliers ``y`` (for
``A``) and ``z >= 0`` (for ``G``). It runs a fixed number of iterations (so it vmaps and
jits with a static cost) and freezes an instance once its duality gap and residuals are
below ``tol`` relative to the data scale, which keeps the final iterate strictly interior.

Gradients. The solution is differentiated by the implicit function theorem on the KKT map
``F(x, y, z; Q, q, A, b, G, h) = (Qx + q + A^T y + G^T z, Ax - b, z * (Gx - h))`` using
:func:`jaxopt.implicit_diff.root_vjp`. The transposed KKT system is solved with the same
Schur-complement structure as a Newton step (one Cholesky of ``Q + G^T diag(z/s) G``), not a
generic dense solve. At the interior final iterate this matches differentiating the
log-barrier-smoothed problem at barrier ``s^T z / m`` (IntOpt-style), which keeps gradients
finite for LPs and degenerate instances; on non-degenerate instances it tends to the exact
derivative of the QP solution as ``tol -> 0``.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxopt.implicit_diff import root_vjp
from jaxtyping import Array, ArrayLike, Float

__all__ = ["QPSolution", "solve_qp", "default_tol"]

_STEP_FRACTION = 0.99


class QPSolution(NamedTuple):
    """Solution of :func:`solve_qp`; ``primal``, ``eq_dual`` and ``ineq_dual`` carry gradients."""

    primal: Array  # (n,)
    eq_dual: Array  # (m_eq,)
    ineq_dual: Array  # (m_ineq,)
    slack: Array  # (m_ineq,)  h - G x (>= 0 up to tol)
    converged: Array  # () bool: tolerances met (False for infeasible/unbounded data)
    gap: Array  # () slack^T ineq_dual
    iterations: Array  # () int: iterations taken before stopping


def default_tol(dtype) -> float:
    """Relative tolerance on the gap and primal residuals: 1e-9 in float64, 1e-6 in float32.

    The dual residual is held to ``10 * tol`` (float64) or ``1000 * tol`` (float32)."""
    return 1e-9 if jnp.finfo(dtype).bits == 64 else 1e-6


def _ridge(dtype) -> float:
    return 1e-12 if jnp.finfo(dtype).bits == 64 else 1e-5


class _Factor(NamedTuple):
    h: Array  # unregularised reduced matrix, for iterative refinement
    chol_h: Array
    h_inv_at: Array
    chol_s: Array


def _factor(Q, A, G, w, ridge) -> _Factor:
    """Factor the reduced Newton matrix H = Q + G^T diag(w) G (+ ridge) and its Schur
    complement A H^-1 A^T for the equality block."""
    n = Q.shape[0]
    H = Q + (G.T * w) @ G
    # The ridge is scaled by the data (not by W, which blows up near the solution).
    # Relative (per-diagonal) plus absolute ridge; iterative refinement in
    # :func:`_reduced_solve` removes its bias. The absolute part is scaled by the data,
    # not by W (which blows up near the solution).
    scale = 1.0 + jnp.max(jnp.abs(jnp.diagonal(Q))) + jnp.max(jnp.sum(G * G, axis=0))
    diag = jnp.diagonal(H)
    chol_h = jnp.linalg.cholesky(H + jnp.diag(ridge * (diag + scale)))
    h_inv_at = jax.scipy.linalg.cho_solve((chol_h, True), A.T)
    S = A @ h_inv_at
    s_diag = jnp.diagonal(S)
    s_scale = jnp.max(s_diag, initial=0.0)
    chol_s = jnp.linalg.cholesky(S + jnp.diag(ridge * (s_diag + s_scale)))
    return _Factor(H, chol_h, h_inv_at, chol_s)


def _reduced_solve_once(f: _Factor, A, r1, r2):
    h_inv_r1 = jax.scipy.linalg.cho_solve((f.chol_h, True), r1)
    if A.shape[0] == 0:
        return h_inv_r1, jnp.zeros((0,), r1.dtype)
    dy = jax.scipy.linalg.cho_solve((f.chol_s, True), A @ h_inv_r1 - r2)
    return h_inv_r1 - f.h_inv_at @ dy, dy


def _reduced_solve(f: _Factor, A, r1, r2, refine: int = 2):
    """Solve [[H, A^T], [A, 0]] [dx; dy] = [r1; r2] with the factors of :func:`_factor`,
    plus ``refine`` steps of iterative refinement against the unregularised matrix (this
    is what makes float32 reach ~1e-6 relative accuracy)."""
    dx, dy = _reduced_solve_once(f, A, r1, r2)
    for _ in range(refine):
        e1 = r1 - f.h @ dx - A.T @ dy
        e2 = r2 - A @ dx
        cx, cy = _reduced_solve_once(f, A, e1, e2)
        dx, dy = dx + cx, dy + cy
    return dx, dy


class _State(NamedTuple):
    x: Array
    y: Array
    z: Array
    s: Array
    done: Array
    iterations: Array


def _max_step(v, dv):
    ratio = jnp.where(dv < 0, -v / jnp.where(dv < 0, dv, -1.0), jnp.inf)
    return jnp.minimum(1.0, jnp.min(ratio, initial=jnp.inf))


def _residuals(data, x, y, z, s):
    Q, q, A, b, G, h = data
    r_dual = Q @ x + q + A.T @ y + G.T @ z
    r_eq = A @ x - b
    r_ineq = G @ x + s - h
    return r_dual, r_eq, r_ineq


def _converged(data, state, tol):
    Q, q, A, b, G, h = data
    r_dual, r_eq, r_ineq = _residuals(data, state.x, state.y, state.z, state.s)
    inf = lambda v: jnp.max(jnp.abs(v), initial=0.0)  # noqa: E731
    obj = 0.5 * state.x @ (Q @ state.x) + q @ state.x
    gap = state.s @ state.z
    ok_gap = gap <= tol * jnp.maximum(1.0, jnp.abs(obj))
    ok_p = (inf(r_eq) <= tol * (1.0 + inf(b))) & (inf(r_ineq) <= tol * (1.0 + inf(h)))
    # float32 cannot resolve the multipliers of flat LP directions to 1e-6: the dual
    # residual gets a looser bound there (the primal objective is unaffected).
    dual_factor = 10.0 if jnp.finfo(q.dtype).bits == 64 else 1e3
    ok_d = inf(r_dual) <= dual_factor * tol * (1.0 + inf(q))
    return ok_gap & ok_p & ok_d


def _initial_state(data, ridge):
    Q, q, A, b, G, h = data
    # CVXOPT's start: min 1/2 x'Qx + q'x + 1/2 ||Gx - h||^2 s.t. Ax = b, then shift s, z > 0.
    f = _factor(Q, A, G, jnp.ones_like(h), ridge)
    x, y = _reduced_solve(f, A, -q + G.T @ h, b)
    r = h - G @ x
    shift = lambda v: v + (1.0 + jnp.maximum(0.0, -jnp.min(v, initial=0.0)))  # noqa: E731
    s = shift(r)
    z = shift(-r)
    return _State(x, y, z, s, jnp.asarray(False), jnp.asarray(0, jnp.int32))


def _ipm_step(data, state, tol, ridge):
    Q, q, A, b, G, h = data
    x, y, z, s = state.x, state.y, state.z, state.s
    m = s.shape[0]
    r_dual, r_eq, r_ineq = _residuals(data, x, y, z, s)
    w = z / s
    f = _factor(Q, A, G, w, ridge)

    def direction(r_comp):
        rhs = -r_dual - G.T @ ((z * r_ineq - r_comp) / s)
        dx, dy = _reduced_solve(f, A, rhs, -r_eq)
        dz = (z * r_ineq - r_comp) / s + w * (G @ dx)
        ds = -r_ineq - G @ dx
        return dx, dy, dz, ds

    mu = (s @ z) / m
    dx_a, dy_a, dz_a, ds_a = direction(s * z)
    a_aff = jnp.minimum(_max_step(s, ds_a), _max_step(z, dz_a))
    mu_aff = ((s + a_aff * ds_a) @ (z + a_aff * dz_a)) / m
    sigma = jnp.clip(mu_aff / mu, 0.0, 1.0) ** 3
    dx, dy, dz, ds = direction(s * z + ds_a * dz_a - sigma * mu)
    step = _STEP_FRACTION * jnp.minimum(_max_step(s, ds), _max_step(z, dz))
    tiny = jnp.finfo(s.dtype).tiny
    new = _State(
        x + step * dx,
        y + step * dy,
        jnp.maximum(z + step * dz, tiny),
        jnp.maximum(s + step * ds, tiny),
        state.done,
        state.iterations + 1,
    )
    finite = jnp.all(jnp.isfinite(new.x)) & jnp.all(jnp.isfinite(new.z)) & jnp.all(
        jnp.isfinite(new.y)
    ) & jnp.all(jnp.isfinite(new.s))
    keep = state.done | ~finite
    merged = jax.tree_util.tree_map(lambda a, b_: jnp.where(keep, a, b_), state, new)
    done = state.done | ~finite | _converged(data, merged, tol)
    return merged._replace(done=done)


def _solve(data, iterations, tol, ridge) -> _State:
    state = _initial_state(data, ridge)
    state = state._replace(done=_converged(data, state, tol))
    # A while_loop stops as soon as every instance of a vmapped batch is done; frozen
    # instances are masked inside _ipm_step.
    return jax.lax.while_loop(
        lambda st: ~st.done & (st.iterations < iterations),
        lambda st: _ipm_step(data, st, tol, ridge),
        state,
    )


def _kkt(sol, Q, q, A, b, G, h):
    x, y, z = sol
    return (Q @ x + q + A.T @ y + G.T @ z, A @ x - b, z * (G @ x - h))


def _kkt_transpose_solve(data, s, z, ridge, rhs):
    """Solve J^T u = v for the Jacobian J of :func:`_kkt` at (x, y, z) with slack s.

    J^T = [[Q, A^T, G^T Z], [A, 0, 0], [G, 0, -S]]; eliminating u_3 = S^-1 (G u_1 - v_3)
    leaves [[Q + G^T W G, A^T], [A, 0]] with W = Z S^-1, the Newton matrix.
    """
    Q, q, A, b, G, h = data
    v1, v2, v3 = rhs
    w = z / s
    f = _factor(Q, A, G, w, ridge)
    u1, u2 = _reduced_solve(f, A, v1 + G.T @ (w * v3), v2)
    u3 = (G @ u1 - v3) / s
    return (u1, u2, u3)


@partial(jax.custom_vjp, nondiff_argnums=(6, 7, 8))
def _qp_core(Q, q, A, b, G, h, iterations, tol, ridge):
    return _qp_fwd(Q, q, A, b, G, h, iterations, tol, ridge)[0]


def _qp_fwd(Q, q, A, b, G, h, iterations, tol, ridge):
    data = (Q, q, A, b, G, h)
    st = _solve(data, iterations, tol, ridge)
    out = (st.x, st.y, st.z, _converged(data, st, tol), st.iterations)
    return out, ((st.x, st.y, st.z, st.s), (Q, q, A, b, G, h))


def _qp_bwd(iterations, tol, ridge, res, cotangent):
    (x, y, z, s), data = res
    cot = cotangent[:3]
    solve = lambda matvec, v: _kkt_transpose_solve(data, s, z, ridge, v)  # noqa: E731
    grads = root_vjp(_kkt, (x, y, z), data, cot, solve=solve)
    return tuple(grads)


_qp_core.defvjp(_qp_fwd, _qp_bwd)


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


def solve_qp(
    quad: Float[ArrayLike, "n n"],
    lin: Float[ArrayLike, " n"],
    eq_matrix: Float[ArrayLike, "m_eq n"],
    eq_rhs: Float[ArrayLike, " m_eq"],
    ineq_matrix: Float[ArrayLike, "m n"],
    ineq_rhs: Float[ArrayLike, " m"],
    *,
    iterations: int = 40,
    tol: float | None = None,
) -> QPSolution:
    """Solve min 1/2 x'Qx + q'x s.t. Ax = b, Gx <= h; differentiable in all six arrays.

    Args:
      quad: ``(n, n)`` positive semidefinite ``Q`` (zeros for an LP).
      lin: ``(n,)`` linear term ``q``.
      eq_matrix, eq_rhs: ``(m_eq, n)`` and ``(m_eq,)``; ``m_eq`` may be 0.
      ineq_matrix, ineq_rhs: ``(m, n)`` and ``(m,)`` with ``m >= 1``.
      iterations: maximum interior-point iterations (static). 40 reaches ``tol`` on the problems
        of :mod:`tailjax.dfl.problems`; check ``converged``.
      tol: relative tolerance on gap and residuals (default :func:`default_tol`).

    Returns:
      :class:`QPSolution`. Infeasible or unbounded data leave ``converged = False``.
    """
    arrays = [jnp.asarray(a) for a in (quad, lin, eq_matrix, eq_rhs, ineq_matrix, ineq_rhs)]
    dtype = jnp.result_type(*[a.dtype for a in arrays], float)
    Q, q, A, b, G, h = [a.astype(dtype) for a in arrays]
    _check_shapes(Q, q, A, b, G, h)
    if int(iterations) < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    tol = default_tol(dtype) if tol is None else float(tol)
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    x, y, z, done, it = _qp_core(Q, q, A, b, G, h, int(iterations), tol, _ridge(dtype))
    slack = h - G @ x
    return QPSolution(x, y, z, slack, done, slack @ z, it)

"""A small dense primal-dual interior-point solver for convex QPs and LPs, in pure JAX.

    minimise  1/2 x^T P x + c^T x   subject to   G x <= h,   A x = b

Mehrotra predictor-corrector on the inequality form (slacks s = h - G x >= 0, duals
z >= 0), with the Newton system reduced to the (n + p) x (n + p) matrix
[[P + G^T diag(z/s) G, A^T], [A, 0]] and solved densely. It is meant for *small* problems
(tens to a few hundred variables and rows): the second-stage LPs of a two-stage program
solved once per sample under ``jax.vmap``, and the master problems of the level method in
:mod:`tailjax.stochopt.level`. Everything is a ``lax.while_loop``, so it jits and vmaps.

The problem must be feasible and bounded (no infeasibility certificate is produced; check
``converged``). :func:`lp_value` is the optimal value with a JVP from the optimal duals
(envelope theorem): d V = dc^T x* + z*^T (dG x* - dh) + y*^T (dA x* - db).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

__all__ = ["QPSolution", "solve_qp", "solve_lp", "lp_value"]


class QPSolution(NamedTuple):
    x: Array  # (n,) primal solution
    y: Array  # (p,) equality duals
    z: Array  # (m,) inequality duals (>= 0)
    s: Array  # (m,) slacks h - G x (>= 0)
    objective: Array  # 1/2 x^T P x + c^T x
    iterations: Array
    residual: Array  # max of the relative primal, dual and complementarity residuals
    converged: Array


def _default_tol(dtype):
    return 1e-9 if jnp.finfo(dtype).bits >= 64 else 2e-5


def _max_step(v, dv):
    ratio = jnp.where(dv < 0, -v / jnp.where(dv < 0, dv, -1.0), jnp.inf)
    return jnp.minimum(jnp.min(ratio, initial=jnp.inf), 1e30)


def _check_shapes(P, c, G, h, A, b):
    n = c.shape[-1]
    if P is not None and P.shape != (n, n):
        raise ValueError(f"P must have shape {(n, n)}, got {P.shape}")
    if G.ndim != 2 or G.shape[1] != n or h.shape != (G.shape[0],):
        raise ValueError(f"G must be (m, {n}) and h (m,), got {G.shape} and {h.shape}")
    if A.ndim != 2 or A.shape[1] != n or b.shape != (A.shape[0],):
        raise ValueError(f"A must be (p, {n}) and b (p,), got {A.shape} and {b.shape}")
    if G.shape[0] == 0:
        raise ValueError("G must have at least one row (the feasible set must be bounded)")


def solve_qp(
    P: Float[ArrayLike, "n n"] | None,
    c: Float[ArrayLike, " n"],
    G: Float[ArrayLike, "m n"],
    h: Float[ArrayLike, " m"],
    A: Float[ArrayLike, "p n"] | None = None,
    b: Float[ArrayLike, " p"] | None = None,
    *,
    tol: float | None = None,
    max_iter: int = 100,
) -> QPSolution:
    """Solve one convex QP (``P`` PSD, or ``None`` for an LP) by Mehrotra's method.

    Args:
      P: ``(n, n)`` PSD matrix or ``None``.
      c: ``(n,)``.  G: ``(m, n)``, h: ``(m,)``.  A: ``(p, n)``, b: ``(p,)`` (optional).
      tol: relative tolerance on residuals and the duality gap (default 1e-9 in float64,
        2e-5 in float32).
      max_iter: iteration cap.
    """
    c = jnp.asarray(c)
    if not jnp.issubdtype(c.dtype, jnp.floating):
        c = c.astype(jnp.result_type(float))
    dt = c.dtype
    n = c.shape[-1]
    G, h = jnp.asarray(G, dt), jnp.asarray(h, dt)
    A = jnp.zeros((0, n), dt) if A is None else jnp.asarray(A, dt)
    b = jnp.zeros((0,), dt) if b is None else jnp.asarray(b, dt)
    _check_shapes(None if P is None else jnp.asarray(P), c, G, h, A, b)
    P = jnp.zeros((n, n), dt) if P is None else jnp.asarray(P, dt)
    tol = _default_tol(dt) if tol is None else tol
    m, p = G.shape[0], A.shape[0]
    reg = jnp.asarray(1e-12 if jnp.finfo(dt).bits >= 64 else 1e-7, dt)
    eye_n, eye_p = jnp.eye(n, dtype=dt), jnp.eye(p, dtype=dt)
    scale_c = 1.0 + jnp.max(jnp.abs(c))
    scale_h = 1.0 + jnp.max(jnp.abs(h))
    scale_b = 1.0 + jnp.max(jnp.abs(b), initial=0.0)

    def kkt_factor(H):
        top = jnp.concatenate([H + reg * eye_n, A.T], axis=1)
        bottom = jnp.concatenate([A, -reg * eye_p], axis=1)
        return jax.scipy.linalg.lu_factor(jnp.concatenate([top, bottom]))

    def kkt_solve(lu, r1, r2):
        sol = jax.scipy.linalg.lu_solve(lu, jnp.concatenate([r1, r2]))
        return sol[:n], sol[n:]

    # Start: least-squares point, then Mehrotra-style shifts of s and z into the interior.
    lu0 = kkt_factor(P + G.T @ G)
    x0, y0 = kkt_solve(lu0, -c + G.T @ h, b)
    s0 = h - G @ x0
    # Duals: z = G w with w the least-squares correction of the dual residual.
    z0 = G @ kkt_solve(lu0, -(P @ x0 + c + A.T @ y0), jnp.zeros(p, dt))[0]
    s0 = s0 + jnp.maximum(-1.5 * jnp.min(s0), 0.0)
    z0 = z0 + jnp.maximum(-1.5 * jnp.min(z0), 0.0)
    s0, z0 = jnp.maximum(s0, 1e-3), jnp.maximum(z0, 1e-3)
    sz = jnp.dot(s0, z0)
    s0 = s0 + 0.5 * sz / jnp.sum(z0)
    z0 = z0 + 0.5 * sz / jnp.sum(s0)

    def residuals(x, y, z, s):
        rd = P @ x + c + G.T @ z + A.T @ y
        rp = A @ x - b
        ri = G @ x + s - h
        obj = 0.5 * x @ P @ x + c @ x
        res = jnp.maximum(
            jnp.max(jnp.abs(rd)) / scale_c,
            jnp.maximum(jnp.max(jnp.abs(ri)) / scale_h, jnp.max(jnp.abs(rp), initial=0.0) / scale_b),
        )
        gap = jnp.dot(s, z) / (1.0 + jnp.abs(obj))
        return rd, rp, ri, jnp.maximum(res, gap)

    def newton(lu, z, s, rd, rp, ri, rc):
        d = z / s
        dx, dy = kkt_solve(lu, -rd - G.T @ (d * ri - rc / s), -rp)
        dz = d * (G @ dx + ri) - rc / s
        ds = -ri - G @ dx
        return dx, dy, dz, ds

    tiny = jnp.asarray(jnp.finfo(dt).eps, dt) ** 2

    def cond(state):
        x, y, z, s, it, res, stop = state
        return (it < max_iter) & (res > tol) & ~stop

    def body(state):
        x, y, z, s, it, res, _ = state
        rd, rp, ri, _ = residuals(x, y, z, s)
        mu = jnp.dot(s, z) / m
        lu = kkt_factor(P + (G.T * (z / s)) @ G)
        dx, dy, dz, ds = newton(lu, z, s, rd, rp, ri, s * z)
        a_aff = jnp.minimum(1.0, jnp.minimum(_max_step(s, ds), _max_step(z, dz)))
        mu_aff = jnp.dot(s + a_aff * ds, z + a_aff * dz) / m
        sigma = jnp.clip(mu_aff / mu, 0.0, 1.0) ** 3
        rc = s * z + ds * dz - sigma * mu
        dx, dy, dz, ds = newton(lu, z, s, rd, rp, ri, rc)
        alpha = jnp.minimum(1.0, 0.99 * jnp.minimum(_max_step(s, ds), _max_step(z, dz)))
        new = (x + alpha * dx, y + alpha * dy, z + alpha * dz, s + alpha * ds)
        new_res = residuals(*new)[3]
        # Stop (keeping the last finite iterate) on breakdown, a vanishing step, or once the
        # complementarity has collapsed below rounding (degenerate problems stall there).
        broken = ~jnp.isfinite(new_res) | ~jnp.all(jnp.isfinite(jnp.concatenate(new)))
        x, y, z, s = jax.tree_util.tree_map(lambda a, b: jnp.where(broken, a, b), (x, y, z, s), new)
        res = jnp.where(broken, res, new_res)
        stop = broken | (alpha < 1e-8) | (jnp.dot(s, z) / m < tiny * (1.0 + jnp.abs(c @ x)))
        return x, y, z, s, it + 1, res, stop

    res0 = residuals(x0, y0, z0, s0)[3]
    x, y, z, s, it, res, _ = jax.lax.while_loop(
        cond, body, (x0, y0, z0, s0, jnp.asarray(0, jnp.int32), res0, jnp.asarray(False))
    )
    obj = 0.5 * x @ P @ x + c @ x
    return QPSolution(x, y, z, s, obj, it, res, res <= tol)


def solve_lp(
    c: Float[ArrayLike, " n"],
    G: Float[ArrayLike, "m n"],
    h: Float[ArrayLike, " m"],
    A: Float[ArrayLike, "p n"] | None = None,
    b: Float[ArrayLike, " p"] | None = None,
    *,
    tol: float | None = None,
    max_iter: int = 100,
) -> QPSolution:
    """Solve one LP ``min c^T x s.t. G x <= h, A x = b`` (see :func:`solve_qp`)."""
    return solve_qp(None, c, G, h, A, b, tol=tol, max_iter=max_iter)


@jax.custom_jvp
def _lp_value(c, G, h, A, b):
    return solve_lp(c, G, h, A, b).objective


@_lp_value.defjvp
def _lp_value_jvp(primals, tangents):
    c, G, h, A, b = primals
    dc, dG, dh, dA, db = tangents
    sol = solve_lp(c, G, h, A, b)
    x, y, z = sol.x, sol.y, sol.z
    dv = dc @ x + z @ (dG @ x - dh) + y @ (dA @ x - db)
    return sol.objective, dv


def lp_value(
    c: Float[ArrayLike, " n"],
    G: Float[ArrayLike, "m n"],
    h: Float[ArrayLike, " m"],
    A: Float[ArrayLike, "p n"] | None = None,
    b: Float[ArrayLike, " p"] | None = None,
) -> Float[Array, ""]:
    """Optimal value of ``min c^T x s.t. G x <= h, A x = b``, differentiable in all data.

    The derivative comes from the optimal duals (a subgradient where the LP is degenerate).
    """
    c = jnp.asarray(c)
    if not jnp.issubdtype(c.dtype, jnp.floating):
        c = c.astype(jnp.result_type(float))
    n = c.shape[-1]
    A = jnp.zeros((0, n), c.dtype) if A is None else jnp.asarray(A, c.dtype)
    b = jnp.zeros((0,), c.dtype) if b is None else jnp.asarray(b, c.dtype)
    return _lp_value(c, jnp.asarray(G, c.dtype), jnp.asarray(h, c.dtype), A, b)


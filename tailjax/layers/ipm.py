"""Primal-dual interior-point engine for convex QPs with structured constraint operators, and
implicit differentiation of its solution (jaxopt ``root_vjp``).

Problem: min_x 1/2 x'Qx + q'x  s.t.  Ax = b,  Gx <= h, given as a *structure*: a NamedTuple
pytree of arrays with methods

    quad_mv(x) = Qx,  lin = q,  eq_mv(x) = Ax,  eq_rmv(y) = A'y,  eq_rhs = b,
    ineq_mv(x) = Gx,  ineq_rmv(z) = G'z,  ineq_rhs = h,
    factor(w, ridge) -> F   (factors of H = Q + G' diag(w) G, regularised),
    solve(F, r1, r2) -> (dx, dy)  solving [[H, A'], [A, 0]] [dx; dy] = [r1; r2] approximately,

so that a problem with separable slack variables (the CVaR SAA) is factored in
O(K d^2 + d^3) instead of O((K + d)^3). :mod:`tailjax.layers.qp` gives the dense structure.

Algorithm: Mehrotra predictor-corrector on Gx + s = h, s >= 0, multipliers y and z >= 0,
CVXOPT's starting point, iterative refinement of every linear solve (two steps in float64,
six in float32: with fewer, float32 solves of ill-conditioned late iterations lose the
decision's last digits; six reach ~1e-6 relative CVaR on energy-price instances), a
``while_loop`` capped at ``iterations`` that freezes an instance once gap and residuals are
below ``tol`` (under ``vmap`` the loop runs until the slowest instance is done) or when a step
turns non-finite. The complementarity each step aims at is floored at a tenth of what the gap
test allows: driving it further to 0 only ill-conditions the Newton systems, and float64
solves of near-LPs then stalled with the dual residual far above its test. It returns the
best iterate seen (the smallest largest ratio of a test to its tolerance): a solve that does
not converge is accepted when that iterate is within ``REDUCED_ACCURACY`` (10x) of every test,
as interior-point codes report "reduced accuracy" (float32 iterates can stall a few percent
above the dual test, and later ones get worse).

Gradients: the implicit function theorem on the KKT map
F(x, y, z; data) = (Qx + q + A'y + G'z, Ax - b, z * (Gx - h)). The transposed KKT system is
solved with the same structured factorisation (eliminating z leaves the Newton matrix), so
a backward pass costs about one interior-point iteration. At the strictly interior final
iterate this is the derivative of the log-barrier-smoothed problem at barrier s'z/m
(IntOpt-style): finite for LPs and degenerate instances, and the exact derivative of the
solution on non-degenerate instances as ``tol -> 0``.
"""

from __future__ import annotations

import functools
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxopt.implicit_diff import root_vjp
from jaxtyping import Array

from tailjax._checks import check_int

__all__ = ["IPMState", "ipm_solve", "default_tol", "ridge_for", "full_precision"]

_STEP_FRACTION = 0.99
# A solve that stalls (float32 iterates often stop a few percent above the dual test, and
# later ones get worse) returns its best iterate, accepted as converged when it meets every
# test to this factor of its tolerance.
REDUCED_ACCURACY = 10.0
# the complementarity each step aims at is at least this fraction of the gap test's
_MU_FLOOR = 0.1


def _refine_steps(dtype) -> int:
    return 2 if jnp.finfo(dtype).bits == 64 else 6


def default_tol(dtype) -> float:
    """Relative tolerance on the gap and primal residuals: 1e-9 in float64, 1e-6 in float32.

    The dual residual is held to ``10 * tol`` (float64) or ``1000 * tol`` (float32): float32
    cannot resolve the multipliers of flat LP directions further (the primal is unaffected).
    """
    return 1e-9 if jnp.finfo(dtype).bits == 64 else 1e-6


def ridge_for(dtype) -> float:
    """Relative ridge of the Newton factorisations; iterative refinement removes its effect.

    In float32 it is 1e-6: with 1e-5 the ridge (scaled by the largest column norm, K for the
    CVaR threshold) made refinement too slow, and energy-price solves stopped up to 3.5e-3
    away from the float64 CVaR or stalled for the whole budget.
    """
    return 1e-12 if jnp.finfo(dtype).bits == 64 else 1e-6


class IPMState(NamedTuple):
    x: Array
    y: Array
    z: Array
    s: Array
    done: Array
    iterations: Array


def _hmv(P, w, x):
    return P.quad_mv(x) + P.ineq_rmv(w * P.ineq_mv(x))


def kkt_solve(P, F, w, r1, r2):
    """Solve [[Q + G'WG, A'], [A, 0]] [dx; dy] = [r1; r2] with refinement."""
    def refine(_, d):
        dx, dy = d
        e1 = r1 - _hmv(P, w, dx) - P.eq_rmv(dy)
        e2 = r2 - P.eq_mv(dx)
        cx, cy = P.solve(F, e1, e2)
        return dx + cx, dy + cy

    return jax.lax.fori_loop(0, _refine_steps(r1.dtype), refine, P.solve(F, r1, r2))


def _max_step(v, dv):
    ratio = jnp.where(dv < 0, -v / jnp.where(dv < 0, dv, -1.0), jnp.inf)
    return jnp.minimum(1.0, jnp.min(ratio, initial=jnp.inf))


def _residuals(P, x, y, z, s):
    """(dual, equality and inequality residuals, objective 1/2 x'Qx + q'x)."""
    qx = P.quad_mv(x)
    r_dual = qx + P.lin + P.eq_rmv(y) + P.ineq_rmv(z)
    r_eq = P.eq_mv(x) - P.eq_rhs
    r_ineq = P.ineq_mv(x) + s - P.ineq_rhs
    return r_dual, r_eq, r_ineq, 0.5 * x @ qx + P.lin @ x


def _inf(v):
    return jnp.max(jnp.abs(v), initial=0.0)


def _merit(P, st: IPMState, tol: float) -> Array:
    """The largest ratio of a convergence test to its tolerance (<= 1: converged)."""
    r_dual, r_eq, r_ineq, obj = _residuals(P, st.x, st.y, st.z, st.s)
    gap = (st.s @ st.z) / (tol * jnp.maximum(1.0, jnp.abs(obj)))
    primal = jnp.maximum(_inf(r_eq) / (tol * (1.0 + _inf(P.eq_rhs))),
                         _inf(r_ineq) / (tol * (1.0 + _inf(P.ineq_rhs))))
    dual_factor = 10.0 if jnp.finfo(st.x.dtype).bits == 64 else 1e3
    dual = _inf(r_dual) / (dual_factor * tol * (1.0 + _inf(P.lin)))
    m = jnp.maximum(jnp.maximum(gap, primal), dual)
    return jnp.where(jnp.isfinite(m), m, jnp.inf)


def converged(P, st: IPMState, tol: float) -> Array:
    return _merit(P, st, tol) <= 1.0


def _initial_state(P, ridge):
    # CVXOPT: min 1/2 x'Qx + q'x + 1/2 ||Gx - h||^2 s.t. Ax = b, then shift s, z > 0.
    h = P.ineq_rhs
    w = jnp.ones_like(h)
    F = P.factor(w, ridge)
    x, y = kkt_solve(P, F, w, -P.lin + P.ineq_rmv(h), P.eq_rhs)
    r = h - P.ineq_mv(x)
    shift = lambda v: v + (1.0 + jnp.maximum(0.0, -jnp.min(v, initial=0.0)))  # noqa: E731
    return IPMState(x, y, shift(-r), shift(r), jnp.asarray(False), jnp.asarray(0, jnp.int32))


def _ipm_step(P, st: IPMState, ridge, tol) -> IPMState:
    x, y, z, s = st.x, st.y, st.z, st.s
    m = s.shape[0]
    r_dual, r_eq, r_ineq, obj = _residuals(P, x, y, z, s)
    w = z / s
    F = P.factor(w, ridge)

    def direction(r_comp):
        t = (z * r_ineq - r_comp) / s
        dx, dy = kkt_solve(P, F, w, -r_dual - P.ineq_rmv(t), -r_eq)
        gdx = P.ineq_mv(dx)
        return dx, dy, t + w * gdx, -r_ineq - gdx

    mu = (s @ z) / m
    dx_a, _, dz_a, ds_a = direction(s * z)
    a_aff = jnp.minimum(_max_step(s, ds_a), _max_step(z, dz_a))
    mu_aff = ((s + a_aff * ds_a) @ (z + a_aff * dz_a)) / m
    sigma = jnp.clip(mu_aff / mu, 0.0, 1.0) ** 3
    # the gap test needs m mu <= tol max(1, |obj|); aiming lower only ill-conditions the
    # Newton systems
    target = jnp.maximum(sigma * mu, _MU_FLOOR * tol * jnp.maximum(1.0, jnp.abs(obj)) / m)
    dx, dy, dz, ds = direction(s * z + ds_a * dz_a - target)
    step = _STEP_FRACTION * jnp.minimum(_max_step(s, ds), _max_step(z, dz))
    tiny = jnp.finfo(s.dtype).tiny
    new = IPMState(
        x + step * dx, y + step * dy, jnp.maximum(z + step * dz, tiny),
        jnp.maximum(s + step * ds, tiny), st.done, st.iterations + 1,
    )
    finite = jnp.all(jnp.asarray([jnp.all(jnp.isfinite(v)) for v in new[:4]]))
    keep = st.done | ~finite
    merged = jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), st, new)
    return merged._replace(done=st.done | ~finite)


def _run(P, iterations, tol, ridge) -> tuple[IPMState, Array]:
    """Iterate until converged or out of budget; returns the best iterate (smallest merit)
    and whether it is accepted: converged, or, where the solve stalled, within
    ``REDUCED_ACCURACY`` of every test."""
    st = _initial_state(P, ridge)
    m0 = _merit(P, st, tol)
    st = st._replace(done=m0 <= 1.0)

    def body(carry):
        st, best, best_m = carry
        new = _ipm_step(P, st, ridge, tol)
        m = _merit(P, new, tol)
        new = new._replace(done=new.done | (m <= 1.0))
        better = m < best_m
        best = jax.tree_util.tree_map(lambda a, b: jnp.where(better, a, b), new, best)
        return new, best, jnp.minimum(m, best_m)

    st, best, best_m = jax.lax.while_loop(
        lambda c: ~c[0].done & (c[0].iterations < iterations), body, (st, st, m0)
    )
    return best._replace(iterations=st.iterations), best_m <= REDUCED_ACCURACY


def _kkt(sol, P):
    x, y, z = sol
    return (
        P.quad_mv(x) + P.lin + P.eq_rmv(y) + P.ineq_rmv(z),
        P.eq_mv(x) - P.eq_rhs,
        z * (P.ineq_mv(x) - P.ineq_rhs),
    )


def _transpose_solve(P, s, z, ridge, rhs):
    """J^T u = v for J = d kkt / d(x, y, z): eliminating u_3 = S^-1 (G u_1 - v_3) leaves the
    Newton system with W = Z S^-1."""
    v1, v2, v3 = rhs
    w = _clip_weights(z, s)
    F = P.factor(w, ridge)
    u1, u2 = kkt_solve(P, F, w, v1 + P.ineq_rmv(w * v3), v2)
    # u3 enters the gradient only through z * u3 (F3 = z * (Gx - h)); with the clipped
    # weights z * u3 = w * (G u1 - v3), which avoids dividing by slacks near zero.
    return (u1, u2, w * (P.ineq_mv(u1) - v3) / z)


def _clip_weights(z, s):
    """Clip the barrier weights z/s to kappa^(+-1) around the middle of their log range.

    Near the solution z/s spans ~1/mu^2 between active and inactive rows, and the normal
    equations lose the accuracy of G u1 on active rows. Clipping treats active constraints
    as stiff springs of stiffness kappa (relative): the gradient is that of a slightly
    softened problem (kappa = 1e10 in float64, 1e4 in float32, tuned against finite
    differences: ~1e-8 and ~1e-3 relative gradient error on non-degenerate instances).
    """
    kappa = KAPPA_64 if jnp.finfo(z.dtype).bits == 64 else KAPPA_32
    tiny = jnp.finfo(z.dtype).tiny
    log_w = jnp.log(jnp.maximum(z, tiny)) - jnp.log(jnp.maximum(s, tiny))
    center = 0.5 * (jnp.max(log_w) + jnp.min(log_w))
    return jnp.exp(jnp.clip(log_w, center - jnp.log(kappa), center + jnp.log(kappa)))


KAPPA_64 = 1e10
KAPPA_32 = 1e4


@partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _core(P, iterations, tol, ridge):
    return _fwd(P, iterations, tol, ridge)[0]


# Every product in the solver at full precision: the default lets GPUs (TF32 on Ampere and
# later) round float32 products to 10 mantissa bits, and late iterations then stall.
_FULL_PRECISION = "highest"


def full_precision(fn):
    """Trace ``fn`` with every matrix product at full precision (see ``_FULL_PRECISION``)."""
    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with jax.default_matmul_precision(_FULL_PRECISION):
            return fn(*args, **kwargs)

    return wrapped


def _fwd(P, iterations, tol, ridge):
    with jax.default_matmul_precision(_FULL_PRECISION):
        st, ok = _run(P, iterations, tol, ridge)
        out = (st.x, st.y, st.z, ok, st.iterations)
    return out, ((st.x, st.y, st.z, st.s), P)


def _bwd(iterations, tol, ridge, res, cotangent):
    (x, y, z, s), P = res
    solve = lambda matvec, v: _transpose_solve(P, s, z, ridge, v)  # noqa: E731
    with jax.default_matmul_precision(_FULL_PRECISION):
        return root_vjp(_kkt, (x, y, z), (P,), cotangent[:3], solve=solve)


_core.defvjp(_fwd, _bwd)


def ipm_solve(P: Any, *, iterations: int, tol: float | None = None):
    """Solve a structured QP; returns ``(x, y, z, converged, iterations)``.

    ``x, y, z`` carry gradients to every array leaf of ``P`` (implicit differentiation).
    """
    iterations = check_int(iterations, "iterations", minimum=1)
    dtype = P.lin.dtype
    tol = default_tol(dtype) if tol is None else float(tol)
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    return _core_jit(P, iterations, tol, ridge_for(dtype))


# jit-compiled entry point: repeated eager calls reuse the compiled solver (inside a user's
# jit it is inlined).
_core_jit = jax.jit(_core, static_argnums=(1, 2, 3))

"""Differentiable decisions: the CVaR sample-average decision and the point decision.

For cost samples ``c_1..c_K`` (rows of ``costs``, already in *minimisation* form: the loss of
decision ``w`` under sample ``k`` is ``c_k^T w``), a feasible set ``W`` (:class:`Polytope`),
an optional deterministic quadratic term ``w^T P w`` (the portfolio's ``w^T Sigma w``) and a
QPTL regulariser ``reg * ||w||^2``::

    w* = argmin_{w in W, u}  u + (1 / tail_prob) sum_k pi_k (c_k^T w - u)_+
                             + w^T P w + reg ||w||^2,          pi_k = 1/K (or given weights)

i.e. ``argmin_w CVaR_{tail_prob}[c^T w] + w^T P w + reg ||w||^2`` on the empirical
distribution of the samples (Rockafellar-Uryasev). It is solved as one QP with slacks
``s_k >= c_k^T w - u, s_k >= 0`` by the interior-point engine :mod:`tailjax.layers.ipm`
(the slacks are eliminated in closed form: O(K d^2 + d^3) per iteration), differentiated in
``costs``, ``weights``, ``P`` and the polytope by implicit differentiation (jaxopt).

Risk level. ``tail_prob`` is the library's tail mass: the mean of the worst ``tail_prob``
fraction of the samples. Gen-DFL's ``alpha`` ("the worst alpha-fraction", CVaR_alpha with
``1/(alpha K)`` in the SAA) is the same number: ``tail_prob = alpha``; ``tail_prob = 1`` is
the risk-neutral (mean-cost) decision.

LPs (``P = 0``) have piecewise-constant solutions, hence zero gradients almost everywhere;
``reg > 0`` (QPTL, Wilder et al. 2019) makes the decision unique and smooth in the costs.
With ``reg = 0`` the gradient is still finite: it is the derivative of the interior-point
iterate (a log-barrier smoothing of the LP), see :mod:`tailjax.layers.qp`.

Every function handles one instance; ``jax.vmap`` over instances (costs, and the polytope
too when it differs per instance).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import (
    check_open_unit,
    check_positive,
    check_scalar,
    check_weights,
    is_concrete,
    nan_where,
    traced_bad_weights,
    traced_out_of_range,
)
from tailjax.layers.ipm import full_precision, ipm_solve
from tailjax.layers.polytope import Polytope, polytope_constraints
from tailjax.layers.qp import dense_factor, dense_solve, solve_qp
from tailjax.layers.scaling import check_on_failure, cost_normalisation, on_failure_result

__all__ = ["DecisionInfo", "cvar_decision", "point_decision"]


class DecisionInfo(NamedTuple):
    """Solver diagnostics of a decision layer."""

    objective: Array  # optimal value of the (regularised) decision problem
    var: Array  # the Rockafellar-Uryasev threshold u* (VaR of c^T w*); cost for point decisions
    converged: Array  # tolerances met, or a stalled solve's best iterate within 10x of them
    iterations: Array


class CVaRQP(NamedTuple):
    """The CVaR SAA QP in variables x = (w (d), u, s (K)) as a structure for
    :func:`tailjax.layers.ipm.ipm_solve`::

        min 1/2 w'Qw w + u + sum_k r_k s_k   s.t.  C w - u - s <= 0,  -s <= 0,
            lower <= w <= upper,  A_ub w <= b_ub,  A_eq w = b_eq,

    with r = pi / tail_prob. The slacks s are eliminated in closed form in the Newton
    system: H reduces to blockdiag(Qw + box/ub terms, 0) + E' diag(a b / (a + b)) E with
    E = [C, -1] and a, b the barrier weights of the two slack rows, so a factorisation costs
    O(K d^2 + d^3) instead of O((K + d)^3).
    """

    C: Array  # (K, d)
    r: Array  # (K,)
    Qw: Array  # (d, d)
    A0: Array  # (m_eq, d)
    b0: Array  # (m_eq,)
    lo: Array  # (d,)
    hi: Array  # (d,)
    Aub: Array  # (m_ub, d)
    bub: Array  # (m_ub,)

    def _split_x(self, x):
        d = self.C.shape[1]
        return x[:d], x[d], x[d + 1 :]

    def _split_z(self, z):
        K, d = self.C.shape
        return z[:K], z[K : 2 * K], z[2 * K : 2 * K + d], z[2 * K + d : 2 * K + 2 * d], z[2 * K + 2 * d :]

    @property
    def lin(self):
        d = self.C.shape[1]
        return jnp.concatenate([jnp.zeros((d,), self.r.dtype), jnp.ones((1,), self.r.dtype), self.r])

    @property
    def eq_rhs(self):
        return self.b0

    @property
    def ineq_rhs(self):
        K = self.C.shape[0]
        return jnp.concatenate([jnp.zeros((2 * K,), self.r.dtype), self.hi, -self.lo, self.bub])

    def quad_mv(self, x):
        w, _, _ = self._split_x(x)
        return jnp.concatenate([self.Qw @ w, jnp.zeros((1 + self.C.shape[0],), x.dtype)])

    def eq_mv(self, x):
        return self.A0 @ x[: self.C.shape[1]]

    def eq_rmv(self, y):
        return jnp.concatenate([self.A0.T @ y, jnp.zeros((1 + self.C.shape[0],), y.dtype)])

    def ineq_mv(self, x):
        w, u, s = self._split_x(x)
        return jnp.concatenate([self.C @ w - u - s, -s, w, -w, self.Aub @ w])

    def ineq_rmv(self, z):
        za, zb, zu, zl, zq = self._split_z(z)
        gw = self.C.T @ za + zu - zl + self.Aub.T @ zq
        return jnp.concatenate([gw, -jnp.sum(za, keepdims=True), -za - zb])

    def _E(self):
        return jnp.concatenate([self.C, -jnp.ones((self.C.shape[0], 1), self.C.dtype)], axis=1)

    def factor(self, wts, ridge):
        a, b, wu, wl, wq = self._split_z(wts)
        D = a + b
        gamma = a * b / D
        E = self._E()
        d = self.C.shape[1]
        Hw = self.Qw + jnp.diag(wu + wl) + (self.Aub.T * wq) @ self.Aub
        H = (E.T * gamma) @ E
        H = H.at[:d, :d].add(Hw)
        scale = 2.0 + jnp.max(jnp.abs(jnp.diagonal(self.Qw))) + jnp.max(jnp.sum(E**2, axis=0))
        Av = jnp.concatenate([self.A0, jnp.zeros((self.A0.shape[0], 1), self.A0.dtype)], axis=1)
        return (a, D, dense_factor(H, Av, ridge, scale))

    def solve(self, F, r1, r2):
        a, D, f = F
        d = self.C.shape[1]
        rv, rs = r1[: d + 1], r1[d + 1 :]
        E = self._E()
        Av = jnp.concatenate([self.A0, jnp.zeros((self.A0.shape[0], 1), self.A0.dtype)], axis=1)
        dv, dy = dense_solve(f, Av, rv + E.T @ (a * rs / D), r2)
        ds = (rs + a * (E @ dv)) / D
        return jnp.concatenate([dv, ds]), dy


def _check_common(d, polytope, quadratic, reg):
    if polytope.lower.shape[-1] != d:
        raise ValueError(
            f"costs have {d} components but the polytope has dimension {polytope.lower.shape[-1]}"
        )
    if quadratic is not None and jnp.shape(quadratic) != (d, d):
        raise ValueError(f"quadratic must have shape ({d}, {d}), got {jnp.shape(quadratic)}")
    check_positive(reg, "reg", allow_zero=True)


def _traced_bad_reg(reg):
    return traced_out_of_range(reg, low=0.0, high=float("inf"), low_closed=True)


def _quad_block(quadratic, reg, d, dtype):
    P = jnp.zeros((d, d), dtype) if quadratic is None else jnp.asarray(quadratic).astype(dtype)
    return 2.0 * (0.5 * (P + P.T) + jnp.asarray(reg, dtype) * jnp.eye(d, dtype=dtype))


@full_precision
def point_decision(
    cost: Float[ArrayLike, " d"],
    polytope: Polytope,
    *,
    quadratic: Float[ArrayLike, "d d"] | None = None,
    reg: float = 0.0,
    iterations: int = 40,
    tol: float | None = None,
    return_info: bool = False,
    on_failure: str = "nan",
):
    """argmin_{w in W} c^T w + w^T P w + reg ||w||^2 for one cost vector ``(d,)``.

    Equals :func:`cvar_decision` with a single sample (CVaR of a point mass is the value).
    Differentiable in ``cost``, ``quadratic`` and the polytope. ``on_failure`` as in
    :func:`cvar_decision` (a NaN decision where the solver did not converge, by default).
    """
    check_on_failure(on_failure)
    cost = jnp.asarray(cost)
    if cost.ndim != 1 or cost.shape[0] == 0:
        raise ValueError(f"cost must be a non-empty vector (d,), got shape {cost.shape}")
    d = cost.shape[0]
    _check_common(d, polytope, quadratic, reg)
    dtype = jnp.result_type(cost.dtype, polytope.lower.dtype, float)
    cost = cost.astype(dtype)
    Q = _quad_block(quadratic, reg, d, dtype)
    A, b, G, h = (a.astype(dtype) for a in polytope_constraints(polytope))
    sol = solve_qp(Q, cost, A, b, G, h, iterations=iterations, tol=tol, on_failure="ignore")
    w = on_failure_result(sol.primal, sol.converged, on_failure, "point_decision")
    w = nan_where(_traced_bad_reg(reg), w)
    if not return_info:
        return w
    obj = 0.5 * w @ (Q @ w) + cost @ w
    return w, DecisionInfo(obj, cost @ w, sol.converged, sol.iterations)


@full_precision
def cvar_decision(
    costs: Float[ArrayLike, "K d"],
    polytope: Polytope,
    tail_prob: float,
    *,
    quadratic: Float[ArrayLike, "d d"] | None = None,
    reg: float = 0.0,
    weights: Float[ArrayLike, " K"] | None = None,
    iterations: int = 40,
    tol: float | None = None,
    return_info: bool = False,
    on_failure: str = "nan",
):
    """The CVaR sample-average decision for ``K`` cost samples ``(K, d)``.

    The costs are centred by the equality rows and scaled to order one inside the solver
    (:mod:`tailjax.layers.scaling`), so float32 reaches the float64 decision for costs of
    any magnitude (energy prices of order 1e3, costs of order 1e-5); the decision and the
    info are in the caller's units.

    Args:
      costs: ``(K, d)`` cost samples in minimisation form (negate returns/values).
      polytope: feasible set ``W`` of dimension ``d``.
      tail_prob: tail mass in (0, 1] (= Gen-DFL's alpha); 1 gives the mean-cost decision.
      quadratic: optional ``(d, d)`` PSD deterministic term ``w^T P w``.
      reg: QPTL regulariser ``reg * ||w||^2`` (>= 0).
      weights: optional ``(K,)`` non-negative sample weights, normalised to sum to one.
      iterations, tol: interior-point budget and tolerance (:func:`solve_qp`).
      return_info: also return a :class:`DecisionInfo`.
      on_failure: where the solver did not converge, ``"nan"`` (default) returns a NaN
        decision, ``"raise"`` fails a ``checkify`` check (an error outside ``jit``; inside a
        user's ``jit`` wrap it with ``checkify.checkify``), ``"ignore"`` returns the last
        iterate (check ``info.converged``). A traced ``tail_prob`` or ``reg`` out of range
        gives a NaN decision whatever ``on_failure`` says.

    Returns:
      ``w*`` of shape ``(d,)`` (and the info).
    """
    check_on_failure(on_failure)
    costs = jnp.asarray(costs)
    if costs.ndim != 2:
        raise ValueError(f"costs must have shape (K, d), got {costs.shape}")
    K, d = costs.shape
    if K == 0:
        raise ValueError("costs is empty: K = 0 samples")
    check_scalar(tail_prob, "tail_prob")
    check_open_unit(tail_prob, "tail_prob", closed_right=True)
    _check_common(d, polytope, quadratic, reg)
    dtype = jnp.result_type(costs.dtype, polytope.lower.dtype, float)
    costs = costs.astype(dtype)
    if weights is None:
        pi = jnp.full((K,), 1.0 / K, dtype)
    else:
        weights = jnp.asarray(weights)
        if weights.shape != (K,):
            raise ValueError(f"weights must have shape ({K},), got {weights.shape}")
        check_weights(weights, costs[:, 0])
        weights = weights.astype(dtype)
        pi = weights / jnp.sum(weights)
    if is_concrete(tail_prob) and float(tail_prob) == 1.0:
        # CVaR at tail mass 1 is the mean: a point decision on the weighted mean cost
        # (the RU threshold u would be unbounded below).
        out = point_decision(
            pi @ costs, polytope, quadratic=quadratic, reg=reg, iterations=iterations,
            tol=tol, return_info=return_info, on_failure=on_failure,
        )
        bad = traced_bad_weights(weights)
        if not return_info:
            return nan_where(bad, out)
        w, info = out
        return nan_where(bad, w), info._replace(objective=nan_where(bad, info.objective), var=nan_where(bad, info.var))
    tail = jnp.asarray(tail_prob, dtype)
    poly = jax.tree_util.tree_map(lambda a: a.astype(dtype), polytope)
    Qw = _quad_block(quadratic, reg, d, dtype)
    lam, shift, scale = cost_normalisation(
        pi @ costs,
        lambda sh: pi @ jnp.mean((costs - sh) ** 2, axis=1),
        poly.eq_matrix,
        jnp.max(jnp.abs(Qw)),
    )
    P = CVaRQP(
        (costs - shift) / scale, pi / tail, Qw / scale, poly.eq_matrix, poly.eq_rhs,
        poly.lower, poly.upper, poly.ineq_matrix, poly.ineq_rhs,
    )
    x, _, _, ok, it = ipm_solve(P, iterations=iterations, tol=tol)
    w = on_failure_result(x[:d], ok, on_failure, "cvar_decision")
    bad = traced_out_of_range(tail_prob, high_closed=True) | _traced_bad_reg(reg) | traced_bad_weights(weights)
    w = nan_where(bad, w)
    if not return_info:
        return w
    offset = lam @ poly.eq_rhs
    obj = scale * (0.5 * w @ (P.Qw @ w) + P.lin @ x) + offset
    return w, DecisionInfo(obj, scale * x[d] + offset, ok, it)

"""The level bundle method for convex (possibly nonsmooth) minimisation over a polytope,
with a certified optimality gap, in pure JAX.

Given a convex ``fun(theta) -> (value, aux)`` and a decision set Theta from
:mod:`tailjax.stochopt.sets`, each iteration

1. evaluates f and a subgradient at theta_k (``jax.value_and_grad``; for a sample CVaR
   objective this is the exact dual subgradient) and adds the cut
   f(theta) >= f(theta_k) + g_k^T (theta - theta_k);
2. solves the master LP min {eta : eta >= every cut, theta in Theta} with the interior-point
   engine of :func:`tailjax.layers.solve_qp`, and turns its cut multipliers lambda (a convex
   combination) into a *rigorous* lower bound
   f* >= sum_j lambda_j (f_j - g_j^T theta_j) + min_{theta in Theta} (sum_j lambda_j g_j)^T theta
   through the set's exact linear minimisation oracle, so the bound holds whatever the
   accuracy of the master solve;
3. projects theta_k onto the level set {theta in Theta : every cut <= lower + alpha
   (upper - lower)} (a small QP, same solver) to get theta_{k+1}
   (Lemarechal, Nemirovskii & Nesterov 1995).

It stops when ``upper - lower <= atol + tol * |upper|``: the returned ``theta`` is then
certified to be within that gap of the optimum. All loops are ``lax.while_loop`` with a
preallocated cut buffer of ``max_iter + 1`` rows, so the solver jits and vmaps (e.g. over
independent replications). Steps 2 and 3 are posed as one QP family in (theta, eta) that
differs only in data, so the interior-point solver is traced once (compile time).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import (
    check_int, check_open_unit, check_positive, nan_where, traced_below_zero, traced_out_of_range,
)
from tailjax.layers import solve_qp

__all__ = ["LevelResult", "level_method"]

_QP_ITERATIONS = 100  # interior-point cap of the master and projection problems


class LevelResult(NamedTuple):
    theta: Array  # best point found (d,)
    value: Array  # f(theta): the upper bound
    lower: Array  # certified lower bound on min f over Theta
    gap: Array  # value - lower
    iterations: Array
    converged: Array
    aux: Any  # fun's auxiliary output at theta


def _lower_bound(theta_set, cut_g, cut_c, z_cuts):
    lam = jnp.maximum(z_cuts, 0.0)
    lam = lam / jnp.maximum(jnp.sum(lam), jnp.finfo(lam.dtype).tiny)
    _, lmo_value = theta_set.lmo(lam @ cut_g)
    return jnp.dot(lam, cut_c) + lmo_value


def level_method(
    fun: Callable[[Array], tuple[Array, Any]],
    theta_set: Any,
    theta0: Float[ArrayLike, " d"],
    *,
    tol: float = 1e-6,
    atol: float | Array = 0.0,
    max_iter: int = 200,
    level: float = 0.3,
) -> LevelResult:
    """Minimise a convex ``fun(theta) -> (value, aux)`` over ``theta_set`` to a certified gap.

    Args:
      fun: convex in ``theta`` with a subgradient from ``jax.grad`` (aux is carried along).
      theta_set: a set from :mod:`tailjax.stochopt.sets` (``constraints``, ``lmo``,
        ``project``).
      theta0: ``(d,)`` starting point (projected onto the set first); a warm start.
      tol, atol: stop when ``upper - lower <= atol + tol * |upper|``.
      max_iter: cap on cuts (the cut buffer has ``max_iter + 1`` rows).
      level: alpha in (0, 1), the position of the level between the bounds.

    Traced ``tol``, ``atol`` or ``level`` out of range give NaN for theta and the bounds.
    """
    check_positive(tol, "tol", allow_zero=True)
    check_positive(atol, "atol", allow_zero=True)
    check_open_unit(level, "level")
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    invalid = (traced_below_zero(tol)
               | traced_below_zero(atol)
               | traced_out_of_range(level))
    theta0 = jnp.asarray(theta0)
    if theta0.ndim != 1 or theta0.shape[0] == 0:
        raise ValueError(f"theta0 must be a non-empty vector (d,), got shape {theta0.shape}")
    if not jnp.issubdtype(theta0.dtype, jnp.floating):
        theta0 = theta0.astype(jnp.result_type(float))
    dt = theta0.dtype
    d = theta0.shape[-1]
    K = max_iter + 1
    Gs, hs, As, bs = theta_set.constraints(dt)
    if Gs.shape[1] != d:
        raise ValueError(
            f"theta0 must have shape ({Gs.shape[1]},) (the dimension of theta_set), got {theta0.shape}"
        )
    # One (d + 1)-variable QP serves both sub-problems, so the interior-point solver is traced
    # once. Variables (theta, eta); rows: cuts g_j^T theta - eta <= -c_j, a cap eta <= cap,
    # then Theta's rows. Master LP: P = 0, cost eta, cap = best value (never binding at the
    # optimum). Level projection: P = diag(1, .., 1, 0), cost -theta_k^T theta, cap = level.
    G_set = jnp.concatenate([Gs, jnp.zeros((Gs.shape[0], 1), dt)], axis=1)
    A_full = jnp.concatenate([As, jnp.zeros((As.shape[0], 1), dt)], axis=1)
    cap_row = jnp.concatenate([jnp.zeros((1, d), dt), jnp.ones((1, 1), dt)], axis=1)
    e_eta = jnp.concatenate([jnp.zeros(d, dt), jnp.ones(1, dt)])
    P_proj = jnp.diag(jnp.concatenate([jnp.ones(d, dt), jnp.zeros(1, dt)]))
    atol = jnp.asarray(atol, dt)
    value_and_grad = jax.value_and_grad(fun, has_aux=True)

    def evaluate(theta):
        (value, aux), g = value_and_grad(theta)
        return value.astype(dt), aux, g.astype(dt)

    theta = theta_set.project(theta0)
    f0, aux0, g0 = evaluate(theta)
    cut_g = jnp.broadcast_to(g0, (K, d))
    cut_c = jnp.broadcast_to(f0 - g0 @ theta, (K,))
    # With a single cut the master problem is min_theta f0 + g0^T (theta - theta0): the LMO.
    lower0 = cut_c[0] + theta_set.lmo(g0)[1]

    def done(upper, lower):
        return upper - lower <= atol + tol * jnp.abs(upper)

    def cond(state):
        best_v, lower, k = state[3], state[5], state[6]
        return (k < K) & ~done(best_v, lower)

    def add_cut(args):
        theta, cut_g, cut_c, best_v, best_theta, k, best_aux = args
        f, aux, g = evaluate(theta)
        cut_g = cut_g.at[k].set(g)
        cut_c = cut_c.at[k].set(f - g @ theta)
        better = f < best_v
        best_v = jnp.where(better, f, best_v)
        best_theta = jnp.where(better, theta, best_theta)
        best_aux = jax.tree_util.tree_map(lambda a, b: jnp.where(better, a, b), aux, best_aux)
        return theta, cut_g, cut_c, best_v, best_theta, k + 1, best_aux

    def body(state):
        theta, cut_g, cut_c, best_v, best_theta, lower, k, best_aux, is_master = state
        lev = lower + level * (best_v - lower)
        P = jnp.where(is_master, jnp.zeros_like(P_proj), P_proj)
        c = jnp.where(is_master, e_eta, jnp.concatenate([-theta, jnp.zeros(1, dt)]))
        cap = jnp.where(is_master, best_v, lev)
        G = jnp.concatenate([jnp.concatenate([cut_g, -jnp.ones((K, 1), dt)], axis=1), cap_row, G_set])
        h = jnp.concatenate([-cut_c, cap[None], hs])
        sol = solve_qp(P, c, A_full, bs, G, h, iterations=_QP_ITERATIONS, on_failure="ignore")
        # Master: a rigorous bound from the cut multipliers (whatever the solve's accuracy).
        bound = _lower_bound(theta_set, cut_g, cut_c, sol.ineq_dual[:K])
        lower = jnp.where(is_master & jnp.isfinite(bound), jnp.maximum(lower, bound), lower)
        # Projection: the next iterate, then its cut.
        x = sol.primal[:d]
        x = theta_set.project(jnp.where(jnp.all(jnp.isfinite(x)), x, theta))
        theta = jnp.where(is_master, theta, x)
        theta, cut_g, cut_c, best_v, best_theta, k, best_aux = jax.lax.cond(
            is_master, lambda a: a, add_cut, (theta, cut_g, cut_c, best_v, best_theta, k, best_aux)
        )
        return theta, cut_g, cut_c, best_v, best_theta, lower, k, best_aux, ~is_master

    init = (theta, cut_g, cut_c, f0, theta, lower0, jnp.asarray(1, jnp.int32), aux0, jnp.asarray(False))
    _, _, _, best_v, best_theta, lower, k, best_aux, _ = jax.lax.while_loop(cond, body, init)
    best_theta, best_v, lower = nan_where(invalid, (best_theta, best_v, lower))
    return LevelResult(
        theta=best_theta,
        value=best_v,
        lower=lower,
        gap=best_v - lower,
        iterations=k,
        converged=done(best_v, lower),
        aux=best_aux,
    )

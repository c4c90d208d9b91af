"""The level bundle method for convex (possibly nonsmooth) minimisation over a polytope,
with a certified optimality gap, in pure JAX.

Given a convex ``fun(theta) -> (value, aux)`` and a decision set Theta from
:mod:`tailjax.stochopt.sets`, each iteration

1. evaluates f and a subgradient at theta_k (``jax.value_and_grad``; for a sample CVaR
   objective this is the exact dual subgradient) and adds the cut
   f(theta) >= f(theta_k) + g_k^T (theta - theta_k);
2. solves the master LP min {eta : eta >= every cut, theta in Theta} with the interior-point
   solver of :mod:`tailjax.stochopt.lp`, and turns its cut multipliers lambda (a convex
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
independent replications).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import check_positive
from tailjax.stochopt.lp import solve_lp, solve_qp

__all__ = ["LevelResult", "level_method"]


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
    """
    check_positive(tol, "tol", allow_zero=True)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    theta0 = jnp.asarray(theta0)
    if not jnp.issubdtype(theta0.dtype, jnp.floating):
        theta0 = theta0.astype(jnp.result_type(float))
    dt = theta0.dtype
    d = theta0.shape[-1]
    K = max_iter + 1
    Gs, hs, As, bs = theta_set.constraints(dt)
    # Master variables (theta, eta): constraints of Theta, with a zero column for eta.
    G_set = jnp.concatenate([Gs, jnp.zeros((Gs.shape[0], 1), dt)], axis=1)
    A_set = jnp.concatenate([As, jnp.zeros((As.shape[0], 1), dt)], axis=1)
    c_master = jnp.concatenate([jnp.zeros(d, dt), jnp.ones(1, dt)])
    atol = jnp.asarray(atol, dt)
    value_and_grad = jax.value_and_grad(fun, has_aux=True)

    def evaluate(theta):
        (value, aux), g = value_and_grad(theta)
        return value.astype(dt), aux, g.astype(dt)

    def master(cut_g, cut_c):
        G = jnp.concatenate([jnp.concatenate([cut_g, -jnp.ones((K, 1), dt)], axis=1), G_set])
        h = jnp.concatenate([-cut_c, hs])
        sol = solve_lp(c_master, G, h, A_set, bs)
        bound = _lower_bound(theta_set, cut_g, cut_c, sol.z[:K])
        return jnp.where(jnp.isfinite(bound), bound, -jnp.inf)

    def project_level(theta, cut_g, cut_c, lev):
        G = jnp.concatenate([cut_g, Gs])
        h = jnp.concatenate([lev - cut_c, hs])
        sol = solve_qp(jnp.eye(d, dtype=dt), -theta, G, h, As, bs)
        ok = jnp.all(jnp.isfinite(sol.x))
        return theta_set.project(jnp.where(ok, sol.x, theta))

    theta = theta_set.project(theta0)
    f0, aux0, g0 = evaluate(theta)
    cut_g = jnp.broadcast_to(g0, (K, d))
    cut_c = jnp.broadcast_to(f0 - g0 @ theta, (K,))
    # With a single cut the master problem is min_theta f0 + g0^T (theta - theta0): the LMO.
    lower0 = cut_c[0] + theta_set.lmo(g0)[1]

    def done(upper, lower):
        return upper - lower <= atol + tol * jnp.abs(upper)

    def cond(state):
        _, _, _, best_v, _, lower, k, _ = state
        return (k < K) & ~done(best_v, lower)

    def body(state):
        theta, cut_g, cut_c, best_v, best_theta, lower, k, best_aux = state
        lev = lower + level * (best_v - lower)
        theta = project_level(theta, cut_g, cut_c, lev)
        f, aux, g = evaluate(theta)
        cut_g = cut_g.at[k].set(g)
        cut_c = cut_c.at[k].set(f - g @ theta)
        better = f < best_v
        best_v = jnp.where(better, f, best_v)
        best_theta = jnp.where(better, theta, best_theta)
        best_aux = jax.tree_util.tree_map(lambda a, b: jnp.where(better, a, b), aux, best_aux)
        lower = jnp.maximum(lower, master(cut_g, cut_c))
        return theta, cut_g, cut_c, best_v, best_theta, lower, k + 1, best_aux

    init = (theta, cut_g, cut_c, f0, theta, lower0, jnp.asarray(1, jnp.int32), aux0)
    _, _, _, best_v, best_theta, lower, k, best_aux = jax.lax.while_loop(cond, body, init)
    return LevelResult(
        theta=best_theta,
        value=best_v,
        lower=lower,
        gap=best_v - lower,
        iterations=k,
        converged=done(best_v, lower),
        aux=best_aux,
    )

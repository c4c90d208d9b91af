"""PyEPO's portfolio: maximum expected return under a variance cap, solved in JAX.

    max_w  r^T w   s.t.  1^T w = 1,  w >= 0,  w^T Sigma w <= risk_level,
    risk_level = gamma * mean(Sigma)        (PyEPO 2.2: gamma = 2.25, mean over all entries)

(``pyepo.model.*.portfolioModel``; the Gen-DFL authors' public code evaluates on it).
The cap is always feasible: the equal-weight portfolio has variance mean(Sigma) <=
risk_level for gamma >= 1.

:func:`risk_capped_portfolio` solves it by its Lagrangian: for a multiplier ``lam >= 0``,
``w(lam) = argmin_{w in simplex} -r^T w + lam w^T Sigma w`` is a simplex-constrained QP
(:func:`tailjax.layers.point_decision`), and the variance of ``w(lam)`` does not increase
with ``lam``. If the best single asset already meets the cap, it is the answer (``lam = 0``);
otherwise ``lam`` is bisected in ``log lam`` until the cap binds, and the feasible end of the
bracket is returned. The KKT conditions of ``w(lam*)`` are those of the capped problem with
multiplier ``lam*``, so the decision is exact up to the bisection and QP tolerances (checked
against PyEPO's own Pyomo + SCIP model in ``tests/dfl/test_pyepo_equivalence.py``). Run it
in float64 for decisions accurate to about 1e-7. No gradient (an oracle).

:func:`pyepo_portfolio_instance` bundles PyEPO's data (:func:`portfolio_gen_data`), the
true p(c|x) and this oracle.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from tailjax.dfl.problems.base import ProblemInstance, make_problem
from tailjax.dfl.problems.portfolio import (
    FactorReturnModel,
    _check,
    _draw_factor_model,
    _intercept,
)
from tailjax.layers import make_polytope, point_decision

__all__ = ["pyepo_risk_level", "risk_capped_portfolio", "pyepo_portfolio_instance"]


def pyepo_risk_level(covariance: Float[ArrayLike, "d d"], gamma: float = 2.25) -> Array:
    """PyEPO's variance cap ``gamma * mean(covariance)`` (the mean over all d^2 entries)."""
    if not float(gamma) >= 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    cov = jnp.asarray(covariance)
    return gamma * jnp.mean(cov.astype(jnp.result_type(cov.dtype, float)))


def _simplex(d, dtype):
    return make_polytope(jnp.zeros((d,), dtype), jnp.ones((d,), dtype),
                         eq_matrix=jnp.ones((1, d), dtype), eq_rhs=jnp.ones((1,), dtype), check=False)


def risk_capped_portfolio(
    returns: Float[ArrayLike, " d"],
    covariance: Float[ArrayLike, "d d"],
    risk_level: Float[ArrayLike, ""],
    *,
    bisections: int = 60,
    iterations: int = 40,
    span: float = 1e8,
) -> Float[Array, " d"]:
    """argmax returns^T w over the simplex with w^T covariance w <= risk_level (module
    docstring); one instance, ``jax.vmap`` over return vectors.

    Args:
      returns: ``(d,)`` expected returns ``r``.
      covariance: ``(d, d)`` positive semidefinite ``Sigma``.
      risk_level: the variance cap (:func:`pyepo_risk_level`); at least the minimum variance
        over the simplex, or the result is the minimum-variance end of the bracket.
      bisections: halvings of the bracket of ``log lam`` (static).
      iterations: interior-point iterations per QP (static).
      span: the bracket is ``lam0 / span .. lam0 * span`` around the natural scale
        ``lam0 = (max r - min r) / trace(Sigma) * d``.

    Returns:
      ``w`` of shape ``(d,)``.
    """
    r = jnp.asarray(returns)
    dtype = jnp.result_type(r.dtype, jnp.asarray(covariance).dtype, float)
    r = r.astype(dtype)
    cov = jnp.asarray(covariance).astype(dtype)
    d = r.shape[0] if r.ndim == 1 else 0
    if r.ndim != 1 or d == 0:
        raise ValueError(f"returns must be a non-empty vector (d,), got shape {r.shape}")
    if cov.shape != (d, d):
        raise ValueError(f"covariance must have shape ({d}, {d}), got {cov.shape}")
    if not isinstance(bisections, (int, np.integer)) or bisections < 1:
        raise ValueError(f"bisections must be a positive integer, got {bisections!r}")
    if not span > 1:
        raise ValueError(f"span must be > 1, got {span}")
    cap = jnp.asarray(risk_level).astype(dtype)
    poly = _simplex(d, dtype)
    cov = 0.5 * (cov + cov.T)

    def w_of(log_lam):
        return point_decision(-r, poly, quadratic=jnp.exp(log_lam) * cov, iterations=iterations)

    def variance(w):
        return w @ (cov @ w)

    tiny = jnp.finfo(dtype).tiny
    lam0 = jnp.maximum(jnp.max(r) - jnp.min(r), tiny) / jnp.maximum(jnp.trace(cov), tiny) * d
    lo0, hi0 = jnp.log(lam0) - np.log(span), jnp.log(lam0) + np.log(span)

    def body(_, carry):
        lo, hi, w_hi = carry
        mid = 0.5 * (lo + hi)
        w_mid = w_of(mid)
        over = variance(w_mid) > cap
        return jnp.where(over, mid, lo), jnp.where(over, hi, mid), jnp.where(over, w_hi, w_mid)

    # the carried decision is w(hi) once hi has moved; before, the equal weights (variance
    # mean(Sigma), within PyEPO's cap) stand in for w(hi0)
    start = jnp.full((d,), 1.0 / d, dtype)
    _, _, capped = jax.lax.fori_loop(0, int(bisections), body, (lo0, hi0, start))
    best_single = jax.nn.one_hot(jnp.argmax(r), d, dtype=dtype)
    return jnp.where(variance(best_single) <= cap, best_single, capped)


def pyepo_portfolio_instance(
    num_data: int = 320,
    num_features: int = 5,
    num_assets: int = 50,
    deg: int = 1,
    noise_level: float = 1.0,
    seed: int = 135,
    *,
    gamma: float = 2.25,
) -> ProblemInstance:
    """PyEPO's portfolio data (:func:`portfolio_gen_data`'s draws), its true p(c|x), and the
    variance-capped oracle :func:`risk_capped_portfolio`.

    The ``problem`` is the linear part, f(c, w) = -c^T w over the simplex: the cap
    ``w^T Sigma w <= gamma mean(Sigma)`` is a quadratic constraint, which the CVaR decision
    layer (:func:`tailjax.dfl.decision`) does not take; only ``oracle`` respects it.
    """
    _check(num_data, num_features, num_assets, deg, noise_level, "num_assets")
    rnd = np.random.RandomState(seed)
    a = _intercept(deg, False)
    B, L, x, r = _draw_factor_model(rnd, num_data, num_features, num_assets, deg, noise_level, a)
    dtype = jnp.result_type(float)
    model = FactorReturnModel(jnp.asarray(B, dtype), jnp.asarray(L, dtype), int(deg), float(noise_level), a)
    cov = L @ L.T + (1e-2 * noise_level) ** 2 * np.eye(num_assets)
    cap = float(pyepo_risk_level(jnp.asarray(cov, dtype), gamma))
    cov_j = jnp.asarray(cov, dtype)
    problem = make_problem(_simplex(num_assets, dtype), sign=-1.0)

    def oracle(c):
        return jax.lax.stop_gradient(risk_capped_portfolio(c, cov_j, cap))

    return ProblemInstance("pyepo_portfolio", problem, model, oracle, x, r.astype(np.float32))

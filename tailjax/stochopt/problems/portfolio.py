"""Portfolio CVaR and mean-CVaR (tutorial Example 1 and Formulation 2), with closed forms.

Returns are R = mu + L X with X a standardised random vector: X ~ N(0, I) (Gaussian
returns) or X multivariate Student-t with identity scale and ``nu`` degrees of freedom
(heavy-tailed returns, nu = 3 by default). The loss of the long-only portfolio theta is

    l(x, theta) = -theta^T (mu + L x),     Theta = {theta >= 0, 1^T theta = 1, mu^T theta >= t},

piecewise linear in x (growth rate rho = 1), so both exponential tilting (Gaussian case)
and the self-structuring transform apply to X. Importance sampling acts on X, not on R.

Closed forms: l(X, theta) has the law of -theta^T mu + ||L^T theta|| Y with Y standard
normal or standard t_nu, so VaR and CVaR at any theta are exact
(:func:`portfolio_var_cvar`), and the optimal value c_beta = min_theta -theta^T mu +
k_beta ||L^T theta|| is a deterministic convex program solved to a certified gap
(:func:`portfolio_optimum`). Mean-CVaR with weight lam: lam E l + (1 - lam) CVaR, i.e.
-theta^T mu + (1 - lam) k_beta ||L^T theta||.

Default parameters (documented, not from data): mu_i evenly spaced in [0.5, 1.5] (percent),
volatilities evenly spaced in [2, 6], equicorrelation 0.3, target t halfway between the
mean of mu and its maximum.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import betainc, gammaln, ndtri
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import check_int, check_open_unit, check_positive
from tailjax.importance.distributions import Distribution, gaussian, multivariate_t
from tailjax.stochopt.level import level_method
from tailjax.stochopt.sets import TargetReturnSimplex

__all__ = [
    "Portfolio",
    "portfolio_problem",
    "standard_tail",
    "portfolio_var_cvar",
    "portfolio_optimum",
]


class Portfolio(NamedTuple):
    mean: Array  # (d,) mean returns mu
    chol: Array  # (d, d) L, returns = mu + L X
    nu: float | None  # None for Gaussian X, else Student-t degrees of freedom
    theta_set: TargetReturnSimplex
    dist: Distribution  # law of X

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def loss(self, x: Array, theta: Array) -> Array:
        """l(x, theta) = -theta^T (mu + L x) for one sample x: (d,)."""
        return -jnp.dot(theta, self.mean + self.chol @ x)

    def pieces(self, theta: Array) -> tuple[Array, Array]:
        """(G, c) with l(x, theta) = G x + c (one piece), for exponential tilting."""
        return (-(self.chol.T @ theta))[None, :], -jnp.dot(theta, self.mean)[None]


def portfolio_problem(
    dim: int,
    returns: str = "gaussian",
    *,
    nu: float = 3.0,
    correlation: float = 0.3,
    target_fraction: float = 0.5,
    dtype=jnp.float32,
) -> Portfolio:
    """Build the Example-1 portfolio with ``dim`` assets (5 to 100 in the benchmarks).

    Args:
      dim: number of assets (>= 2).
      returns: ``"gaussian"`` or ``"t"`` (multivariate Student-t, ``nu`` > 2 for a finite
        variance; CVaR needs nu > 1).
      correlation: equicorrelation in [0, 1).
      target_fraction: t = mean(mu) + target_fraction (max(mu) - mean(mu)), in [0, 1).
    """
    dim = check_int(dim, "dim", minimum=2)
    if returns not in ("gaussian", "t"):
        raise ValueError(f"returns must be 'gaussian' or 't', got {returns!r}")
    if not 0.0 <= correlation < 1.0:
        raise ValueError(f"correlation must lie in [0, 1), got {correlation}")
    if not 0.0 <= target_fraction < 1.0:
        raise ValueError(f"target_fraction must lie in [0, 1), got {target_fraction}")
    if returns == "t" and nu <= 1.0:
        raise ValueError(f"nu must be > 1 for a finite CVaR, got {nu}")
    mu = np.linspace(0.5, 1.5, dim)
    vol = np.linspace(2.0, 6.0, dim)
    corr = np.full((dim, dim), correlation) + (1.0 - correlation) * np.eye(dim)
    chol = np.linalg.cholesky(corr * np.outer(vol, vol))
    target = mu.mean() + target_fraction * (mu.max() - mu.mean())
    mean = jnp.asarray(mu, dtype)
    theta_set = TargetReturnSimplex(mean, jnp.asarray(target, dtype))
    zeros = jnp.zeros(dim, dtype)
    dist = gaussian(zeros) if returns == "gaussian" else multivariate_t(nu, zeros)
    return Portfolio(mean, jnp.asarray(chol, dtype), None if returns == "gaussian" else float(nu), theta_set, dist)


def _t_survival(x, nu):
    return 0.5 * betainc(nu / 2.0, 0.5, nu / (nu + x * x))


def _t_quantile_upper(tail_prob, nu, dtype):
    """q with P(T_nu > q) = tail_prob (tail_prob < 1/2), by bisection in log q."""
    nu = jnp.asarray(nu, dtype)
    p = jnp.asarray(tail_prob, dtype)

    def body(_, b):
        lo, hi = b
        mid = 0.5 * (lo + hi)
        above = _t_survival(jnp.exp(mid), nu) > p
        return jnp.where(above, mid, lo), jnp.where(above, hi, mid)

    lo, hi = jax.lax.fori_loop(0, 200, body, (jnp.asarray(-30.0, dtype), jnp.asarray(30.0, dtype)))
    return jnp.exp(0.5 * (lo + hi))


def standard_tail(tail_prob: float, nu: float | None = None, dtype=jnp.float32) -> tuple[Array, Array]:
    """(VaR, CVaR) at tail mass ``tail_prob`` of a standard normal (``nu=None``) or t_nu."""
    check_open_unit(tail_prob, "tail_prob")
    beta = jnp.asarray(tail_prob, dtype)
    if nu is None:
        q = -ndtri(beta)
        return q, jnp.exp(-0.5 * q * q) / jnp.sqrt(2 * jnp.pi).astype(dtype) / beta
    check_positive(nu - 1.0, "nu - 1")
    q = _t_quantile_upper(tail_prob, nu, dtype)
    n = jnp.asarray(nu, dtype)
    log_pdf = gammaln((n + 1) / 2) - gammaln(n / 2) - 0.5 * jnp.log(n * jnp.pi) - (n + 1) / 2 * jnp.log1p(q * q / n)
    return q, (n + q * q) / (n - 1) * jnp.exp(log_pdf) / beta


def portfolio_var_cvar(
    problem: Portfolio, theta: Float[ArrayLike, " d"], tail_prob: float, risk_weight: float = 0.0
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """Exact (VaR, CVaR) of l(X, theta); with ``risk_weight`` lam the second output is the
    mean-CVaR lam E l + (1 - lam) CVaR."""
    theta = jnp.asarray(theta, problem.mean.dtype)
    q, c = standard_tail(tail_prob, problem.nu, problem.mean.dtype)
    scale = jnp.linalg.norm(problem.chol.T @ theta)
    mean_loss = -jnp.dot(theta, problem.mean)
    return mean_loss + scale * q, mean_loss + (1.0 - risk_weight) * scale * c


def portfolio_optimum(
    problem: Portfolio,
    tail_prob: float,
    risk_weight: float = 0.0,
    *,
    tol: float = 1e-9,
    max_iter: int = 300,
) -> tuple[Float[Array, " d"], Float[Array, ""], Float[Array, ""]]:
    """The exact optimum (theta*, c_beta, VaR at theta*) of the population problem,
    min over Theta of -theta^T mu + (1 - lam) k_beta ||L^T theta||, by the level method
    (run it under ``jax.enable_x64`` for a gap near 1e-9)."""
    dtype = problem.mean.dtype

    def fun(theta):
        return portfolio_var_cvar(problem, theta, tail_prob, risk_weight)[1], jnp.zeros((), dtype)

    res = level_method(
        fun, problem.theta_set, problem.theta_set.feasible_point(dtype), tol=tol, max_iter=max_iter
    )
    var, value = portfolio_var_cvar(problem, res.theta, tail_prob, risk_weight)
    return res.theta, value, var

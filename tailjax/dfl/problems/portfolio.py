"""Portfolio (Gen-DFL Appendix B.1) and its factor-model returns, PyEPO-compatible.

Returns given features x (p,) follow PyEPO's ``portfolio.genData`` factor model:

    c = (0.05 / sqrt(p) * B x + a)^deg + L f + 0.01 sigma eps,   f ~ N(0, I_p), eps ~ N(0, I_n)

with ``B_ij ~ Bernoulli(0.5)``, ``L_ij ~ U[-0.0025 sigma, 0.0025 sigma]`` fixed per instance,
so that p(c|x) = N(mean(x), Sigma), ``Sigma = L L^T + (0.01 sigma)^2 I``. PyEPO 2.2 (and this
module by default) uses the intercept ``a = 0.1^(1/deg)`` (the mean return stays near 0.1
at every degree); the Gen-DFL paper prints ``a = 0.1`` (``paper_intercept=True``).

Decision (Gen-DFL): min_w CVaR_alpha[-c^T w + w^T Sigma w] s.t. w in [0, 1]^n, 1^T w <= 1.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jaxtyping import Array, ArrayLike, Float

from tailjax.dfl.problems.base import ProblemInstance, make_problem, qp_oracle
from tailjax.layers import make_polytope

__all__ = ["FactorReturnModel", "portfolio_gen_data", "portfolio_problem", "portfolio_instance"]


@struct.dataclass
class FactorReturnModel:
    """True p(c|x) of the factor-model returns: N(mean(x), L L^T + (0.01 sigma)^2 I)."""

    B: Array  # (n, p) Bernoulli(0.5)
    L: Array  # (n, p) factor loadings
    deg: int = struct.field(pytree_node=False)
    noise: float = struct.field(pytree_node=False)  # sigma (PyEPO's noise_level)
    intercept: float = struct.field(pytree_node=False)

    @property
    def covariance(self) -> Array:
        n = self.L.shape[0]
        return self.L @ self.L.T + (0.01 * self.noise) ** 2 * jnp.eye(n, dtype=self.L.dtype)

    def mean(self, x: Float[ArrayLike, " p"]) -> Float[Array, " n"]:
        """E[c | x] for one feature vector ``(p,)`` (vmap for a batch)."""
        x = jnp.asarray(x, self.B.dtype)
        p = self.B.shape[1]
        return (0.05 * (self.B @ x) / np.sqrt(p) + self.intercept) ** self.deg

    def sample(self, key: Array, x: Float[ArrayLike, " p"], num_samples: int) -> Float[Array, "K n"]:
        """``num_samples`` draws of c ~ p(c | x) for one ``x: (p,)``."""
        n, p = self.B.shape
        kf, ke = jax.random.split(key)
        f = jax.random.normal(kf, (num_samples, p), self.B.dtype)
        eps = jax.random.normal(ke, (num_samples, n), self.B.dtype)
        return self.mean(x) + f @ self.L.T + (0.01 * self.noise) * eps


def _check(num_data, num_features, dim, deg, noise, name_dim):
    for value, name in ((num_data, "num_data"), (num_features, "num_features"), (dim, name_dim),
                        (deg, "deg")):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be finite and >= 0, got {noise}")


def _draw_factor_model(rnd, num_data, num_features, num_assets, deg, noise_level, intercept):
    """PyEPO 2.2 draw order: B, L, x, then [f | eps] in one (n, p + m) normal call."""
    n, p, m = num_data, num_features, num_assets
    B = rnd.binomial(1, 0.5, (m, p))
    L = rnd.uniform(-2.5e-3 * noise_level, 2.5e-3 * noise_level, (m, p))
    x = rnd.normal(0, 1, (n, p))
    r = (0.05 * (x @ B.T) / np.sqrt(p) + intercept) ** deg
    fe = rnd.randn(n, p + m)
    F, E = fe[:, :p], fe[:, p:]
    r = r + F @ L.T + 0.01 * noise_level * E
    return B, L, x, r


def _intercept(deg, paper_intercept):
    return 0.1 if paper_intercept else 0.1 ** (1.0 / deg)


def portfolio_gen_data(
    num_data: int,
    num_features: int,
    num_assets: int,
    deg: int = 1,
    noise_level: float = 1.0,
    seed: int = 135,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Same arrays as ``pyepo.data.portfolio.genData`` (PyEPO 2.2): ``(cov, x, r)`` with
    ``cov (m, m)`` float64, ``x (n, p)`` float64, ``r (n, m)`` float32."""
    _check(num_data, num_features, num_assets, deg, noise_level, "num_assets")
    rnd = np.random.RandomState(seed)
    B, L, x, r = _draw_factor_model(
        rnd, num_data, num_features, num_assets, deg, noise_level, _intercept(deg, False)
    )
    cov = L @ L.T + (1e-2 * noise_level) ** 2 * np.eye(num_assets)
    return cov, x, r.astype(np.float32)


def portfolio_problem(covariance: Float[ArrayLike, "n n"], *, reg: float = 0.0, budget: float = 1.0):
    """Gen-DFL's portfolio: f(c, w) = -c^T w + w^T Sigma w, w in [0, 1]^n, 1^T w <= budget."""
    cov = jnp.asarray(covariance)
    cov = cov.astype(jnp.result_type(cov.dtype, float))
    n = cov.shape[0] if cov.ndim else 0
    if cov.ndim != 2 or cov.shape != (n, n):
        raise ValueError(f"covariance must be square, got {cov.shape}")
    if budget <= 0:
        raise ValueError(f"budget must be > 0, got {budget}")
    dtype = cov.dtype
    poly = make_polytope(
        jnp.zeros((n,), dtype), jnp.ones((n,), dtype), ineq_matrix=jnp.ones((1, n), dtype),
        ineq_rhs=jnp.asarray([budget], dtype),
    )
    return make_problem(poly, sign=-1.0, quadratic=cov, reg=reg)


def portfolio_instance(
    num_data: int = 320,
    num_features: int = 5,
    num_assets: int = 50,
    deg: int = 1,
    noise: float = 20.0,
    seed: int = 135,
    *,
    paper_intercept: bool = False,
    reg: float = 0.0,
) -> ProblemInstance:
    """Portfolio data (PyEPO draw order), problem, true p(c|x) and QP oracle.

    Defaults follow Gen-DFL's Table 2 (n = 320 data points, sigma = 20). ``reg`` is the
    training QPTL term (the portfolio is already strongly convex through Sigma).
    """
    _check(num_data, num_features, num_assets, deg, noise, "num_assets")
    rnd = np.random.RandomState(seed)
    a = _intercept(deg, paper_intercept)
    B, L, x, r = _draw_factor_model(rnd, num_data, num_features, num_assets, deg, noise, a)
    dtype = jnp.result_type(float)
    model = FactorReturnModel(jnp.asarray(B, dtype), jnp.asarray(L, dtype), int(deg), float(noise), a)
    problem = portfolio_problem(model.covariance, reg=reg)
    return ProblemInstance("portfolio", problem, model, qp_oracle(problem), x, r.astype(np.float32))

"""Small Gaussian cost laws and CVaR decision problems shared by the exact-evaluation and
Diff-DRO tests."""

import jax.numpy as jnp
import numpy as np

from tailjax.dfl import make_problem
from tailjax.layers import make_polytope


def gaussian(d, seed=0):
    """(mean, cov) of a 3-factor Gaussian with returns of order 0.1."""
    rng = np.random.default_rng(seed)
    L = rng.uniform(-0.05, 0.05, (d, 3))
    cov = L @ L.T + 0.04 ** 2 * np.eye(d)
    mean = rng.uniform(0.02, 0.12, d)
    return mean, cov


def problem(d, budget, quadratic=None):
    """Returns maximised over [0, 1]^d with a budget equality 1^T w = 1 or a weighted capacity."""
    if budget == "equality":
        poly = make_polytope(jnp.zeros(d), jnp.ones(d), eq_matrix=jnp.ones((1, d)), eq_rhs=jnp.ones(1))
    else:
        poly = make_polytope(jnp.zeros(d), jnp.ones(d), ineq_matrix=jnp.linspace(0.5, 1.5, d)[None],
                             ineq_rhs=jnp.asarray([0.8 * d / 3]))
    return make_problem(poly, sign=-1.0, quadratic=quadratic)


def slsqp_reference(mean, cov, kappa, budget, quadratic=None):
    """scipy's SLSQP on ``min -mean^T v + v^T P v + kappa sqrt(v^T cov v)`` over :func:`problem`'s
    polytope, from equal weights, with the analytic gradient (without it SLSQP's line search
    fails on some BLAS thread counts): (objective, result)."""
    from scipy.optimize import minimize

    d = len(mean)
    P = np.zeros((d, d)) if quadratic is None else np.asarray(quadratic)

    def obj(v):
        return -mean @ v + v @ P @ v + kappa * np.sqrt(v @ cov @ v)

    def jac(v):
        return -mean + 2.0 * P @ v + kappa * (cov @ v) / max(np.sqrt(v @ cov @ v), 1e-300)

    if budget == "equality":
        cons = [{"type": "eq", "fun": lambda v: v.sum() - 1.0, "jac": lambda v: np.ones(d)}]
    else:
        a = np.linspace(0.5, 1.5, d)
        cons = [{"type": "ineq", "fun": lambda v: 0.8 * d / 3 - a @ v, "jac": lambda v: -a}]
    ref = minimize(obj, np.full(d, 1.0 / d), jac=jac, method="SLSQP", bounds=[(0, 1)] * d, constraints=cons,
                   options=dict(ftol=1e-15, maxiter=2000))
    return obj, ref

"""Birge & Louveaux's farmer, a risk-averse two-stage linear program (tutorial Example 2).

First stage: acres theta = (wheat, corn, sugar beets) >= 0 with sum(theta) <= 500, planting
costs (150, 230, 260) $/acre. Yields per acre are random, t(X) = (2.5, 3, 20) *
max(1 + sigma X, 0) T/acre with X ~ N(0, I_3) (continuous yields; sigma = 0.15 by default,
the clip at 0 is reached with probability ~1e-11). Second stage, for each outcome, the LP

    Q(theta, t) = min 238 y1 + 210 y2 - 170 w1 - 150 w2 - 36 w3 - 10 w4
                  s.t. t1 theta1 + y1 - w1 >= 200,   t2 theta2 + y2 - w2 >= 240,
                       w3 + w4 <= t3 theta3,   w3 <= 6000,   y, w >= 0

(buy y at 238/210 to feed the cattle, sell w; beets sell at 36 up to the 6000 T quota and at
10 beyond). The loss is the total cost l(x, theta) = c^T theta + Q(theta, t(x)) (negative
for a profit), convex and piecewise linear in theta and in x (rho = 1). Q is solved in JAX
by :func:`tailjax.layers.lp_value` (the interior-point engine of :mod:`tailjax.layers`), one
LP per sample under ``vmap``; its gradient in theta comes from the LP's duals (envelope
theorem). :func:`recourse_closed_form`
gives the same value in closed form (the LP separates by crop) for checking.

The extensive form (every scenario's recourse variables in one LP) is the reference that
the tests and benchmarks solve with scipy's HiGHS; :func:`recourse_matrices` gives its
blocks.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import check_positive
from tailjax.importance.distributions import Distribution, gaussian
from tailjax.layers import lp_value
from tailjax.stochopt.sets import CappedSimplex

__all__ = [
    "Farmer",
    "farmer_problem",
    "recourse_matrices",
    "recourse_cost",
    "recourse_closed_form",
]

PLANTING_COST = (150.0, 230.0, 260.0)
MEAN_YIELD = (2.5, 3.0, 20.0)
LAND = 500.0
# Second-stage variables (y1, y2, w1, w2, w3, w4).
RECOURSE_COST = (238.0, 210.0, -170.0, -150.0, -36.0, -10.0)
FEED = (200.0, 240.0)
BEET_QUOTA = 6000.0


def recourse_matrices(dtype=np.float64):
    """Second stage as  min q^T y  s.t.  W y <= h0 - T(t) theta,  y >= 0  (numpy blocks).

    Returns ``(q, W, h0, T)`` with ``T`` a function of the yields t: (3,) giving (4, 3).
    """
    q = np.asarray(RECOURSE_COST, dtype)
    W = np.array(
        [
            [-1, 0, 1, 0, 0, 0],  # -(y1 - w1) <= t1 theta1 - 200
            [0, -1, 0, 1, 0, 0],
            [0, 0, 0, 0, 1, 1],  # w3 + w4 <= t3 theta3
            [0, 0, 0, 0, 1, 0],  # w3 <= 6000
        ],
        dtype,
    )
    h0 = np.array([-FEED[0], -FEED[1], 0.0, BEET_QUOTA], dtype)

    def T(t):
        t = np.asarray(t, dtype)
        return -np.array([[t[0], 0, 0], [0, t[1], 0], [0, 0, t[2]], [0, 0, 0]], dtype)

    return q, W, h0, T


class Farmer(NamedTuple):
    planting_cost: Array  # (3,)
    mean_yield: Array  # (3,)
    yield_sd: float
    theta_set: CappedSimplex
    dist: Distribution  # law of X (standard normal in R^3)

    def yields(self, x: Array) -> Array:
        """t(x) = mean_yield * max(1 + sigma x, 0)."""
        return self.mean_yield * jnp.maximum(1.0 + self.yield_sd * x, 0.0)

    def loss(self, x: Array, theta: Array) -> Array:
        """Total cost c^T theta + Q(theta, t(x)) of one sample, Q by the JAX LP solver."""
        return jnp.dot(self.planting_cost, theta) + recourse_cost(theta, self.yields(x))


def farmer_problem(yield_sd: float = 0.15, dtype=jnp.float64) -> Farmer:
    """The farmer with Gaussian yield shocks of relative standard deviation ``yield_sd``.

    Use float64 (``jax.enable_x64``): costs are of order 1e5.
    """
    check_positive(yield_sd, "yield_sd")
    return Farmer(
        jnp.asarray(PLANTING_COST, dtype),
        jnp.asarray(MEAN_YIELD, dtype),
        float(yield_sd),
        CappedSimplex(3, LAND),
        gaussian(jnp.zeros(3, dtype)),
    )


def recourse_cost(theta: Float[ArrayLike, " 3"], yields: Float[ArrayLike, " 3"]) -> Float[Array, ""]:
    """Q(theta, t): the second-stage LP solved in JAX (differentiable in theta and t)."""
    theta = jnp.asarray(theta)
    dt = theta.dtype
    t = jnp.asarray(yields, dt)
    q, W, h0, _ = recourse_matrices()
    q, W, h0 = jnp.asarray(q, dt), jnp.asarray(W, dt), jnp.asarray(h0, dt)
    produced = jnp.stack([t[0] * theta[0], t[1] * theta[1], t[2] * theta[2], jnp.zeros((), dt)])
    G = jnp.concatenate([W, -jnp.eye(6, dtype=dt)])
    h = jnp.concatenate([h0 + produced, jnp.zeros(6, dt)])
    return lp_value(q, None, None, G, h)


def recourse_closed_form(theta: Float[ArrayLike, " 3"], yields: Float[ArrayLike, " 3"]) -> Float[Array, ""]:
    """Q(theta, t) in closed form (the LP separates by crop)."""
    theta = jnp.asarray(theta)
    t = jnp.asarray(yields, theta.dtype)
    p = t * theta
    wheat = 238.0 * jnp.maximum(200.0 - p[0], 0.0) - 170.0 * jnp.maximum(p[0] - 200.0, 0.0)
    corn = 210.0 * jnp.maximum(240.0 - p[1], 0.0) - 150.0 * jnp.maximum(p[1] - 240.0, 0.0)
    beets = -36.0 * jnp.minimum(p[2], BEET_QUOTA) - 10.0 * jnp.maximum(p[2] - BEET_QUOTA, 0.0)
    return wheat + corn + beets

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

Variant for importance sampling (``demand_sd > 0``): the cattle's feed demand is random
too, D = (200, 240) * max(1 + sigma_D X_{4:5}, 0), with X in R^5 standard Gaussian or iid
Student-t (``shocks="t"``). In Example 2 the cost is bounded above (a harvest of zero costs
at most the feed bought at 238/210 plus the planting), so its upper tail is not a
large-deviations tail and the tutorial's assumption 2 (the loss grows like ||x||^rho along
the tail directions, here rho = 1) fails; with random demand the cost of the feed bought
grows linearly in X_4, X_5, and assumption 2 holds with rho = 1. The upper tail of the cost
is then driven by demand shocks that no harvest can cover, the regime where self-structuring
IS applies.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import check_positive
from tailjax.importance.distributions import Distribution, gaussian, iid_student_t
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
    dist: Distribution  # law of X (R^3, or R^5 with random demand)
    demand_sd: float = 0.0  # relative sd of the feed demand (0: fixed, Example 2)

    def yields(self, x: Array) -> Array:
        """t(x) = mean_yield * max(1 + sigma x_{1:3}, 0)."""
        return self.mean_yield * jnp.maximum(1.0 + self.yield_sd * x[:3], 0.0)

    def demand(self, x: Array) -> Array:
        """D(x) = (200, 240) * max(1 + sigma_D x_{4:5}, 0) (the fixed demand if sigma_D = 0)."""
        feed = jnp.asarray(FEED, self.mean_yield.dtype)
        if self.demand_sd == 0.0:
            return feed
        return feed * jnp.maximum(1.0 + self.demand_sd * x[3:5], 0.0)

    def loss(self, x: Array, theta: Array) -> Array:
        """Total cost c^T theta + Q(theta, t(x), D(x)) of one sample, Q by the JAX LP solver."""
        return jnp.dot(self.planting_cost, theta) + recourse_cost(theta, self.yields(x), self.demand(x))

    def loss_closed_form(self, x: Array, theta: Array) -> Array:
        """The same total cost with Q in closed form (:func:`recourse_closed_form`)."""
        return jnp.dot(self.planting_cost, theta) + recourse_closed_form(theta, self.yields(x), self.demand(x))


def farmer_problem(
    yield_sd: float = 0.15,
    dtype=jnp.float64,
    *,
    demand_sd: float = 0.0,
    shocks: str = "gaussian",
    nu: float = 3.0,
) -> Farmer:
    """The farmer with yield shocks of relative standard deviation ``yield_sd``.

    Args:
      yield_sd: sigma of the yields (> 0).
      dtype: use float64 (``jax.enable_x64``): costs are of order 1e5.
      demand_sd: sigma_D >= 0 of the feed demand; > 0 gives the IS variant (X in R^5, see
        the module docstring).
      shocks: law of X, ``"gaussian"`` (standard normal) or ``"t"`` (iid Student-t(nu)).
      nu: degrees of freedom of the t shocks (> 1 for a finite CVaR).
    """
    check_positive(yield_sd, "yield_sd")
    check_positive(demand_sd, "demand_sd", allow_zero=True)
    if shocks not in ("gaussian", "t"):
        raise ValueError(f"shocks must be 'gaussian' or 't', got {shocks!r}")
    if shocks == "t" and not nu > 1.0:
        raise ValueError(f"nu must be > 1 for a finite CVaR, got {nu}")
    dim = 3 if demand_sd == 0.0 else 5
    dist = gaussian(jnp.zeros(dim, dtype)) if shocks == "gaussian" else iid_student_t(nu, dim, dtype)
    return Farmer(
        jnp.asarray(PLANTING_COST, dtype),
        jnp.asarray(MEAN_YIELD, dtype),
        float(yield_sd),
        CappedSimplex(3, LAND),
        dist,
        float(demand_sd),
    )


def recourse_cost(
    theta: Float[ArrayLike, " 3"],
    yields: Float[ArrayLike, " 3"],
    demand: Float[ArrayLike, " 2"] | None = None,
) -> Float[Array, ""]:
    """Q(theta, t, D): the second-stage LP solved in JAX (differentiable in theta, t and D);
    ``demand=None`` is the fixed (200, 240)."""
    theta = jnp.asarray(theta)
    dt = theta.dtype
    t = jnp.asarray(yields, dt)
    q, W, h0, _ = recourse_matrices()
    q, W, h0 = jnp.asarray(q, dt), jnp.asarray(W, dt), jnp.asarray(h0, dt)
    if demand is not None:
        h0 = jnp.concatenate([-jnp.asarray(demand, dt), h0[2:]])
    produced = jnp.stack([t[0] * theta[0], t[1] * theta[1], t[2] * theta[2], jnp.zeros((), dt)])
    G = jnp.concatenate([W, -jnp.eye(6, dtype=dt)])
    h = jnp.concatenate([h0 + produced, jnp.zeros(6, dt)])
    return lp_value(q, None, None, G, h)


def recourse_closed_form(
    theta: Float[ArrayLike, " 3"],
    yields: Float[ArrayLike, " 3"],
    demand: Float[ArrayLike, " 2"] | None = None,
) -> Float[Array, ""]:
    """Q(theta, t, D) in closed form (the LP separates by crop)."""
    theta = jnp.asarray(theta)
    t = jnp.asarray(yields, theta.dtype)
    d = jnp.asarray(FEED if demand is None else demand, theta.dtype)
    p = t * theta
    wheat = 238.0 * jnp.maximum(d[0] - p[0], 0.0) - 170.0 * jnp.maximum(p[0] - d[0], 0.0)
    corn = 210.0 * jnp.maximum(d[1] - p[1], 0.0) - 150.0 * jnp.maximum(p[1] - d[1], 0.0)
    beets = -36.0 * jnp.minimum(p[2], BEET_QUOTA) - 10.0 * jnp.maximum(p[2] - BEET_QUOTA, 0.0)
    return wheat + corn + beets

"""Energy-cost aware scheduling (Gen-DFL Appendix B.4) with a synthetic price generator.

Decision: min_p CVaR_alpha[sum_t pi_t p_t] s.t. lower_t <= p_t <= upper_t, sum_t p_t = total
(``P^sch``), over T half-hour periods; the LP oracle fills the cheapest periods first.

Synthetic prices (the embedded default; the real ICON prices are in
:mod:`tailjax.dfl.problems.icon`): features x (p,) ~ N(0, I), and per period t

    pi_t = profile_t * s_t(x) * eps_t * (1 + J_t),
    s_t(x) = ((B x / sqrt(p) + 3)^deg + 1) / 3.5^deg,   eps_t ~ U[1 - w, 1 + w],
    J_t = spike_scale * E_t * Bernoulli(spike_prob),   E_t ~ Exp(1),

with ``profile_t = 30 (1 + 0.5 sin^2(pi t / T))`` (EUR/MWh, a midday peak) and
``B_ij ~ Bernoulli(0.5)``. The rare multiplicative spikes give the right tail that CVaR
decisions hedge against. p(c|x) is exactly this, so true CVaR regret is available.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jaxtyping import Array, ArrayLike, Float

from tailjax.dfl.problems.base import ProblemInstance, make_problem
from tailjax.layers import box_budget, make_polytope

__all__ = ["SpikyPriceModel", "energy_problem", "energy_instance", "price_profile"]


def price_profile(num_periods: int) -> np.ndarray:
    t = np.arange(num_periods)
    return 30.0 * (1.0 + 0.5 * np.sin(np.pi * t / num_periods) ** 2)


@struct.dataclass
class SpikyPriceModel:
    """True p(c|x) of the synthetic prices (see the module docstring)."""

    B: Array  # (T, p)
    profile: Array  # (T,)
    deg: int = struct.field(pytree_node=False)
    noise_width: float = struct.field(pytree_node=False)
    spike_prob: float = struct.field(pytree_node=False)
    spike_scale: float = struct.field(pytree_node=False)

    def signal(self, x: Float[ArrayLike, " p"]) -> Float[Array, " T"]:
        x = jnp.asarray(x, self.B.dtype)
        p = self.B.shape[1]
        s = ((self.B @ x / np.sqrt(p) + 3.0) ** self.deg + 1.0) / 3.5**self.deg
        return self.profile * s

    def mean(self, x: Float[ArrayLike, " p"]) -> Float[Array, " T"]:
        return self.signal(x) * (1.0 + self.spike_prob * self.spike_scale)

    def sample(self, key: Array, x: Float[ArrayLike, " p"], num_samples: int) -> Float[Array, "K T"]:
        s = self.signal(x)
        T = s.shape[0]
        k1, k2, k3 = jax.random.split(key, 3)
        w = self.noise_width
        eps = jax.random.uniform(k1, (num_samples, T), s.dtype, 1.0 - w, 1.0 + w)
        jump = jax.random.exponential(k2, (num_samples, T), s.dtype)
        hit = jax.random.bernoulli(k3, self.spike_prob, (num_samples, T)).astype(s.dtype)
        return s * eps * (1.0 + self.spike_scale * jump * hit)


def energy_problem(
    num_periods: int = 48,
    *,
    lower: float | Float[ArrayLike, " T"] = 0.0,
    upper: float | Float[ArrayLike, " T"] = 1.0,
    total: float = 12.0,
    reg: float = 0.0,
):
    """Scheduling polytope lower <= p <= upper, sum p = total (``ValueError`` if empty)."""
    if not isinstance(num_periods, (int, np.integer)) or num_periods < 1:
        raise ValueError(f"num_periods must be a positive integer, got {num_periods!r}")
    dtype = jnp.result_type(float)
    lo = jnp.broadcast_to(jnp.asarray(lower, dtype), (num_periods,))
    hi = jnp.broadcast_to(jnp.asarray(upper, dtype), (num_periods,))
    lo_sum, hi_sum = float(np.sum(np.asarray(lo))), float(np.sum(np.asarray(hi)))
    if not lo_sum - 1e-9 <= float(total) <= hi_sum + 1e-9:
        raise ValueError(
            f"total must lie in [sum(lower), sum(upper)] = [{lo_sum}, {hi_sum}], got {total}: "
            "the scheduling constraints are infeasible"
        )
    poly = make_polytope(
        lo, hi, jnp.ones((1, num_periods), dtype), jnp.asarray([total], dtype), check=False
    )
    return make_problem(poly, sign=1.0, reg=reg)


def energy_instance(
    num_data: int = 320,
    num_features: int = 8,
    deg: int = 1,
    noise_width: float = 0.5,
    seed: int = 135,
    *,
    num_periods: int = 48,
    spike_prob: float = 0.05,
    spike_scale: float = 2.0,
    lower: float = 0.0,
    upper: float = 1.0,
    total: float = 12.0,
    reg: float = 0.0,
) -> ProblemInstance:
    """Synthetic energy-scheduling data, problem, true p(c|x) and greedy oracle.

    Draw order from ``RandomState(seed)``: B (T, p), x (n, p), eps (n, T), Exp (n, T),
    spike indicators (n, T).
    """
    for value, name in ((num_data, "num_data"), (num_features, "num_features"), (deg, "deg")):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not 0 <= noise_width < 1:
        raise ValueError(f"noise_width must lie in [0, 1), got {noise_width}")
    if not 0 <= spike_prob <= 1:
        raise ValueError(f"spike_prob must lie in [0, 1], got {spike_prob}")
    problem = energy_problem(num_periods, lower=lower, upper=upper, total=total, reg=reg)
    rnd = np.random.RandomState(seed)
    T, p, n = num_periods, num_features, num_data
    B = rnd.binomial(1, 0.5, (T, p))
    x = rnd.normal(0, 1, (n, p))
    profile = price_profile(T)
    s = profile * ((x @ B.T / np.sqrt(p) + 3) ** deg + 1) / 3.5**deg
    eps = rnd.uniform(1 - noise_width, 1 + noise_width, (n, T))
    jump = rnd.exponential(1.0, (n, T))
    hit = rnd.uniform(size=(n, T)) < spike_prob
    c = s * eps * (1.0 + spike_scale * jump * hit)
    dtype = jnp.result_type(float)
    model = SpikyPriceModel(
        jnp.asarray(B, dtype), jnp.asarray(profile, dtype), int(deg), float(noise_width),
        float(spike_prob), float(spike_scale),
    )
    lo, hi = problem.polytope.lower, problem.polytope.upper
    oracle = lambda cost: box_budget(cost, lo, hi, total)  # noqa: E731
    return ProblemInstance("energy", problem, model, oracle, x, c.astype(np.float32))

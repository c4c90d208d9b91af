"""Path weights between two memoryless processes (discrete Girsanov), and weighted sampling.

A fine-tuned field v_theta and the base field v_base drive two memoryless chains on the same
grid (:mod:`tailjax.flows.sde`). Their transitions are Gaussian with the same covariance, so
the log-likelihood ratio of a path under the base and the fine-tuned chain is explicit:

* step 0: X_1 ~ N(alpha_1 xhat_1(X_0), beta_1^2 I), with xhat_1 from v_theta or v_base;
* steps 1..K-2: X_{k+1} ~ N(X_k + h_k (2 v(X_k, t_k) - kappa_k X_k), s_k^2 I);
* the last step is deterministic in both chains and carries no weight (its O(h) difference
  in the drift is ignored, so the weights are exact only for the path up to t_{K-1}).

E_theta[w f(X_1)] = E_base[f(X_1)] with w = exp(log_weight), so these weights give
importance sampling of the pre-trained model from samples of a fine-tuned one (TFFT's
Stage 1 on a tail the pre-trained samples never reach) and the weighted adjoint-matching loss.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from tailjax.flows._fields import call_base, call_field, check_contexts, event_shape
from tailjax.flows.schedule import Schedule, data_prediction, rectified_flow
from tailjax.flows.sde import MemorylessCoefficients, memoryless_coefficients, memoryless_solve

__all__ = ["path_log_weight", "memoryless_sample_and_log_weight"]


def path_log_weight(
    velocity_fn: Callable[[Any, Array, Array], Array],
    params: Any,
    base_velocity_fn: Callable[[Array, Array], Array],
    trajectory: Float[ArrayLike, "k1 *event"],
    coefficients: MemorylessCoefficients,
    schedule: Schedule | None = None,
    context: Any = None,
) -> Float[Array, ""]:
    """log dP_base / dP_theta of one memoryless path ``trajectory: (K + 1, *event)`` drawn under
    v_theta (with the path's ``context``, if the fields take one)."""
    schedule = schedule or rectified_flow()
    traj = jnp.asarray(trajectory)
    c = coefficients
    want = c.ts.shape[0]
    if traj.ndim < 2 or traj.shape[0] != want or 0 in traj.shape:
        raise ValueError(f"trajectory must have shape ({want}, *event) for the grid of coefficients, got {traj.shape}")
    ctx = context
    field = lambda x, t: call_field(velocity_fn, params, x, t, ctx)
    base = lambda x, t: call_base(base_velocity_fn, x, t, ctx)
    x0, x1 = traj[0], traj[1]
    t0 = c.ts[0]
    m_theta = c.alpha[1] * data_prediction(schedule, x0, field(x0, t0), t0)
    m_base = c.alpha[1] * data_prediction(schedule, x0, base(x0, t0), t0)
    first = (jnp.sum((x1 - m_theta) ** 2) - jnp.sum((x1 - m_base) ** 2)) / (2.0 * c.beta[1] ** 2)
    ks = jnp.arange(1, c.h.shape[0] - 1)  # the noisy Euler-Maruyama steps

    def term(k):
        x, x_next, t, h, s = traj[k], traj[k + 1], c.ts[k], c.h[k], c.noise_scale[k]
        v_theta = field(x, t)
        resid = x_next - x - h * (2.0 * v_theta - c.kappa[k] * x)  # = s xi
        delta = 2.0 * h * (v_theta - base(x, t))
        return (jnp.sum(resid**2) - jnp.sum((resid + delta) ** 2)) / (2.0 * s**2)

    return first + jnp.sum(jax.vmap(term)(ks))


def memoryless_sample_and_log_weight(
    key: Array,
    velocity_fn: Callable[[Any, Array, Array], Array],
    params: Any,
    base_velocity_fn: Callable[[Array, Array], Array],
    num_samples: int,
    dim: int | tuple[int, ...],
    *,
    context: Any = None,
    schedule: Schedule | None = None,
    num_steps: int = 40,
    ts: Float[ArrayLike, " k1"] | None = None,
    dtype: Any = None,
) -> tuple[Float[Array, "n *event"], Float[Array, " n"]]:
    """Samples ``(n, *event)`` of the fine-tuned memoryless chain and their log dP_base/dP_theta
    ``(n,)`` (``dim``: d or an event shape; ``context``: optional per-sample context)."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    dtype = dtype or jnp.result_type(float)
    schedule = schedule or rectified_flow()
    check_contexts(context, num_samples)
    coefs = memoryless_coefficients(schedule, num_steps, ts, dtype)
    shape = event_shape(dim)
    k0, k1 = jax.random.split(key)
    x0 = jax.random.normal(k0, (num_samples,) + shape, dtype)
    noise = jax.random.normal(k1, (num_samples, coefs.h.shape[0]) + shape, dtype)
    x1, traj = memoryless_solve(velocity_fn, params, x0, noise, context=context, schedule=schedule,
                                coefficients=coefs, return_trajectory=True)
    logw = jax.vmap(lambda p, c: path_log_weight(velocity_fn, params, base_velocity_fn, p, coefs, schedule, c))(
        traj, context)
    return x1, logw

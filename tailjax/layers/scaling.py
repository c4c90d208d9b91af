"""Objective normalisation of the decision QPs, and what a layer returns when its solver fails.

Normalisation. The interior-point tolerances (:func:`tailjax.layers.ipm.default_tol`) are
relative to max(1, |objective|) and to the size of the linear term; in float32 they can only
be met when the objective is of order one. A cost vector ``c`` of order 100 (energy prices)
leaves the dual residual ~1e-7 |c| above the tolerance, and one of order 1e-5 lets an
unconverged iterate pass the absolute gap test. Both are solved *exactly* by an equivalent
problem: for equality rows ``A w = b`` and any ``lam``,

    c^T w = (c - A^T lam)^T w + lam^T b      on the feasible set,

so the costs may be *centred* by ``A^T lam`` (``lam`` the least-squares fit of the mean cost:
a constant added to every cost on a simplex is removed), and the whole objective may be
divided by a *scale* ``s > 0``: with ``m`` the root-mean-square centred cost (or the largest
entry of the quadratic term if that is larger), ``s = m`` for ``m >= 1``, ``s = 1`` for
``0.1 <= m < 1`` and ``s = 10 m`` below. The solver sees costs of order 0.1 to 1; the decision is
unchanged, and the multipliers and values are mapped back (``y = s y' - lam``, ``z = s z'``,
value ``= s value' + lam^T b``). ``lam`` and ``s`` are constants for differentiation
(``stop_gradient``): the solution map is exactly invariant to them.

Failure. ``on_failure`` says what a layer returns where the solver did not converge
(infeasible data, an iteration budget too small): ``"nan"`` (default) a NaN result, so that a
failure cannot pass as a number; ``"raise"`` a ``checkify`` check (outside ``jit`` an error
at once; inside a user's ``jit`` the check stays in the program, wrap the function with
``jax.experimental.checkify.checkify`` to surface it); ``"ignore"`` the last iterate
(check ``converged`` in the returned info).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.experimental import checkify

from tailjax._checks import run_checked

__all__ = ["ON_FAILURE", "check_on_failure", "cost_normalisation", "on_failure_result"]

ON_FAILURE = ("nan", "raise", "ignore")


def check_on_failure(on_failure: str) -> None:
    if on_failure not in ON_FAILURE:
        raise ValueError(f"on_failure must be one of {ON_FAILURE}, got {on_failure!r}")


def cost_normalisation(mean_cost, centred_sq_mean, eq_matrix, quad_scale):
    """``(lam, shift, scale)`` for the costs of a decision problem.

    Args:
      mean_cost: ``(d,)`` the (weighted) mean cost vector.
      centred_sq_mean: function ``shift (d,) -> ()``, the mean squared entry of the costs
        minus ``shift``.
      eq_matrix: ``(m, d)`` equality rows of the feasible set (``m`` may be 0).
      quad_scale: ``()`` the largest absolute entry of the quadratic term (0 for an LP).

    Returns:
      ``lam (m,)``, ``shift = A^T lam (d,)`` and ``scale > 0``, all without gradient.
    """
    dtype = mean_cost.dtype
    m = eq_matrix.shape[0]
    if m:
        gram = eq_matrix @ eq_matrix.T
        ridge = 1e-6 * jnp.trace(gram) / m + jnp.finfo(dtype).tiny
        lam = jnp.linalg.solve(gram + ridge * jnp.eye(m, dtype=dtype), eq_matrix @ mean_cost)
        lam = jnp.where(jnp.all(jnp.isfinite(lam)), lam, 0.0)
    else:
        lam = jnp.zeros((0,), dtype)
    shift = eq_matrix.T @ lam
    size = jnp.maximum(jnp.sqrt(centred_sq_mean(shift)), quad_scale)
    # Large objectives come down to order one; small ones go up only to order 0.1: scaled
    # further up, the late iterations cannot meet the dual tolerance in float32 (the
    # barrier weights span ~1/mu^2), while the gap test's floor of one is loose enough.
    scale = jnp.where(size >= 1, size, jnp.minimum(1.0, 10.0 * size))
    scale = jnp.where(jnp.isfinite(scale) & (scale > 0), scale, 1.0)
    return jax.tree_util.tree_map(jax.lax.stop_gradient, (lam, shift, scale))


def on_failure_result(value, converged, on_failure: str, what: str):
    """``value`` (any pytree) as ``on_failure`` asks, given the solver's ``converged`` flag."""
    if on_failure == "ignore":
        return value
    if on_failure == "nan":
        return jax.tree_util.tree_map(lambda v: jnp.where(converged, v, jnp.nan), value)

    def check(value, converged):
        checkify.check(
            jnp.all(converged),
            f"{what}: the interior-point solver did not converge (infeasible or unbounded "
            "data, or too few iterations)",
        )
        return value

    return run_checked(check, value, converged)

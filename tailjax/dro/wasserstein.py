"""W-DRO in the Wasserstein penalty form (Sinha, Namkoong & Duchi; Staib & Jegelka):

    min_w E_{x ~ P_0} sup_{x'} [ f(w, x') - gamma ||x' - x||^2 ]      (gamma: ``penalty``),

the inner sup approximated by ``steps`` gradient-ascent steps on the input from x' = x, and
the outer gradient taken at the adversarial x' (Danskin). DRAGEN is the same construction in
a generative model's latent space (:mod:`tailjax.dro.dragen`).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from tailjax._checks import check_int, check_positive, nan_where, traced_below_zero
from tailjax.dro.erm import check_batch

__all__ = ["penalty_ascent", "wasserstein_loss"]


def penalty_ascent(
    value_fn: Callable[[jax.Array], jax.Array],
    start: jax.Array,
    penalty: float,
    steps: int,
    step_size: float,
) -> jax.Array:
    """Approximate argmax_u value_fn(u) - penalty ||u - start||^2 by gradient ascent from start.

    ``penalty`` and ``step_size`` must be > 0 and ``steps`` >= 1 (``ValueError`` otherwise;
    traced ones out of range give NaN)."""
    steps = _check_ascent(penalty, steps, step_size)
    bad = traced_below_zero(penalty, allow_zero=False) | traced_below_zero(step_size, allow_zero=False)
    if not jnp.issubdtype(jnp.result_type(start), jnp.floating):  # integer data: ascend in floats
        start = jnp.asarray(start).astype(jnp.result_type(float))

    def body(u, _):
        g = jax.grad(lambda v: value_fn(v) - penalty * jnp.sum((v - start) ** 2))(u)
        return u + step_size * g, None

    u, _ = jax.lax.scan(body, start, None, length=steps)
    return jax.lax.stop_gradient(nan_where(bad, u))


def _check_ascent(penalty, steps, step_size) -> int:
    check_positive(penalty, "penalty")
    check_positive(step_size, "step_size")
    return check_int(steps, "steps", minimum=1)


def wasserstein_loss(
    params: Any,
    batch: Any,
    key: jax.Array,
    *,
    loss_fn: Callable[[Any, Any], jax.Array],
    penalty: float = 1.0,
    steps: int = 15,
    step_size: float = 0.05,
    where: Callable[[Any], jax.Array] | None = None,
    replace: Callable[[Any, jax.Array], Any] | None = None,
) -> tuple[jax.Array, dict]:
    """The W-DRO penalty surrogate averaged over ``batch`` (pytree, leading axis n):
    ``(value, {})``.

    ``penalty`` is gamma, ``steps`` and ``step_size`` the inner gradient ascent.
    ``where(sample)`` picks the array that the adversary moves and ``replace(sample, x)``
    puts a moved one back (default: the whole sample is the array). E.g. for (image, label)
    pairs, ``where=lambda s: s[0], replace=lambda s, x: (x, s[1])``.
    """
    del key
    _check_ascent(penalty, steps, step_size)
    check_batch(batch)
    where = where or (lambda s: s)
    replace = replace or (lambda s, x: x)

    def robust_loss(w, sample):
        x = where(sample)
        value = lambda u: loss_fn(jax.lax.stop_gradient(w), replace(sample, u))
        x_adv = penalty_ascent(value, x, penalty, steps, step_size)
        return loss_fn(w, replace(sample, x_adv))

    return jnp.mean(jax.vmap(robust_loss, in_axes=(None, 0))(params, batch)), {}

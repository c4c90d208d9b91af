"""The decision task Gen-DFL optimises: a cost f(c, w) and its CVaR-SAA decision layer.

Gen-DFL needs two things from a decision problem: the realised cost

    f(c, w) = sign * c^T w + w^T P w,        w in W (a polytope),

(``sign = -1`` for returns/values that are maximised, the portfolio and knapsack;
``sign = +1`` for costs, shortest path and energy scheduling; ``P`` is the portfolio's
``Sigma``, zero otherwise), and the CVaR sample-average decision

    w*(c_1..c_K; alpha) = argmin_{w in W} CVaR_alpha[f(c, w)]  over the samples (+ reg ||w||^2),

solved and differentiated by :func:`tailjax.layers.cvar.cvar_decision`. Gen-DFL's alpha is
the worst alpha-fraction, i.e. the library's ``tail_prob`` (alpha = 1: the mean cost).

A :class:`DecisionTask` is a NamedTuple of arrays (a pytree): it passes through ``jit`` and
``vmap``. Build one from a :mod:`tailjax.dfl.problems` problem with :func:`task_from_problem`
or directly with :func:`make_task`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import check_open_unit, check_positive
from tailjax.layers.cvar import cvar_decision
from tailjax.layers.polytope import Polytope

__all__ = ["DecisionTask", "make_task", "task_cost", "task_decision", "check_num_samples"]


class DecisionTask(NamedTuple):
    """f(c, w) = sign * c^T w + w^T P w over the polytope; see the module docstring."""

    polytope: Polytope
    quadratic: Array  # (d, d) PSD
    sign: Array  # () +1 (costs) or -1 (returns)
    reg: Array  # () QPTL regulariser of the decision layer (>= 0)


def make_task(
    polytope: Polytope,
    *,
    sign: float = 1.0,
    quadratic: Float[ArrayLike, "d d"] | None = None,
    reg: float = 0.0,
) -> DecisionTask:
    """A :class:`DecisionTask`; ``ValueError`` naming the argument on bad input."""
    d = polytope.lower.shape[-1]
    dtype = polytope.lower.dtype
    if float(sign) not in (1.0, -1.0):
        raise ValueError(f"sign must be +1 (costs) or -1 (returns), got {sign}")
    check_positive(reg, "reg", allow_zero=True)
    if quadratic is None:
        quadratic = jnp.zeros((d, d), dtype)
    quadratic = jnp.asarray(quadratic).astype(dtype)
    if quadratic.shape != (d, d):
        raise ValueError(f"quadratic must have shape ({d}, {d}), got {quadratic.shape}")
    return DecisionTask(polytope, quadratic, jnp.asarray(sign, dtype), jnp.asarray(reg, dtype))


def check_num_samples(num_samples: Any, name: str = "num_samples") -> int:
    """K must be an integer >= 1."""
    if int(num_samples) != num_samples or int(num_samples) < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {num_samples}")
    return int(num_samples)


def task_cost(task: DecisionTask, c: Float[ArrayLike, "... d"], w: Float[ArrayLike, " d"]) -> Float[Array, "..."]:
    """Realised cost f(c, w) = sign c^T w + w^T P w; ``c: (..., d)`` gives ``(...)``."""
    c = jnp.asarray(c)
    w = jnp.asarray(w).astype(c.dtype)
    return task.sign.astype(c.dtype) * (c @ w) + w @ (task.quadratic.astype(c.dtype) @ w)


def task_decision(
    task: DecisionTask,
    samples: Float[ArrayLike, "K d"],
    alpha: float,
    *,
    weights: Float[ArrayLike, " K"] | None = None,
    iterations: int = 40,
) -> Float[Array, " d"]:
    """CVaR-SAA decision argmin_w CVaR_alpha[f(c, w)] over ``samples: (K, d)`` (one instance).

    ``alpha`` in (0, 1] is Gen-DFL's level (= ``tail_prob``); ``weights`` are optional
    (self-normalised) sample weights, e.g. importance weights. Differentiable in the
    samples, the weights and the task (implicit differentiation). ``jax.vmap`` over
    instances.
    """
    check_open_unit(alpha, "alpha", closed_right=True)
    samples = jnp.asarray(samples)
    if samples.ndim != 2 or samples.shape[0] < 1:
        raise ValueError(f"samples must have shape (K, d) with K >= 1, got {samples.shape}")
    costs = task.sign.astype(samples.dtype) * samples
    return cvar_decision(
        costs, task.polytope, alpha, quadratic=task.quadratic, reg=task.reg,
        weights=weights, iterations=iterations,
    )


def _vmapped_decision(task, samples, alpha, weights=None):
    """Decisions for a batch: ``samples: (n, K, d)`` -> ``(n, d)`` (task shared)."""
    if weights is None:
        return jax.vmap(lambda s: task_decision(task, s, alpha))(samples)
    return jax.vmap(lambda s, w: task_decision(task, s, alpha, weights=w))(samples, weights)

"""Decision-quality metrics: Gen-DFL's normalised CVaR regret (eq. 9) and PyEPO's
normalised regret.

Gen-DFL eq. (9), for decisions w_hat(x) on test features x_1..x_N::

    100% * mean_i  CVaR_alpha[ f(c, w_hat_i) - f(c, w*_i) ; c ~ p(c|x_i) ]  /  | E f(c, w*_i) |

with w*_i the CVaR-optimal decision under the *true* p(c|x_i). Both the CVaR and the
expectation are taken over M samples of the true conditional, and w*_i is the SAA decision
over the same M samples (``reg = 0``). :func:`regret_reference` draws the samples and solves
for w* once; the returned :class:`RegretReference` is the cache, reused for every method and
every evaluation (pass it to :func:`cvar_regret`). ``tail_prob = 1`` gives the plain
normalised regret ``E[f(c, w_hat) - f(c, w*)] / |E f(c, w*)|`` with w* the mean-cost decision.
Here alpha is ``tail_prob`` (tail_prob: the paper's alpha).

``cvar_regret(..., form="difference_of_cvars")`` scores instead the gap of the two CVaRs,
``CVaR_alpha f(c, w_hat) - CVaR_alpha f(c, w*)`` (>= 0 up to solver tolerance, as w* minimises
the SAA CVaR on the same samples), over the same denominator. The CVaR of the pathwise
difference (the default) is first order in ``w_hat - w*`` (the noise of ``c^T (w_hat - w*)``),
the gap is second order near the optimum, so the gap is much smaller for near-optimal
decisions; the public code of the paper's authors reports a CVaR gap.

:func:`normalized_regret` is PyEPO's ``regret(reduction="normalized")`` on realised costs:
sum_i [f(c_i, w_hat_i) - f(c_i, w*(c_i))] / sum_i |f(c_i, w*(c_i))| (a fraction, not %).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import check_open_unit
from tailjax.dfl.problems.base import DecisionProblem, decision, objective
from tailjax.risk import cvar

__all__ = ["RegretReference", "regret_reference", "cvar_regret", "normalized_regret"]


class RegretReference(NamedTuple):
    """Cached true-distribution samples and CVaR-optimal decisions for eq. (9)."""

    samples: Array  # (N, M, d) draws of c ~ p(c|x_i)
    decisions: Array  # (N, d) true CVaR-optimal w*_i
    optimal_costs: Array  # (N, M) f(c_ij, w*_i)
    tail_prob: float


def _chunked(fn, arrays, chunk):
    n = arrays[0].shape[0]
    outs = [fn(*(a[i : i + chunk] for a in arrays)) for i in range(0, n, chunk)]
    return jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs, axis=0), *outs)


def regret_reference(
    key: Array,
    problem: DecisionProblem,
    model: Any,
    features: Float[ArrayLike, "N p"],
    tail_prob: float,
    *,
    num_samples: int = 1000,
    chunk_size: int = 16,
    iterations: int = 60,
) -> RegretReference:
    """Draw ``num_samples`` costs from the true p(c|x_i) per test point and solve for w*_i.

    Args:
      key: PRNG key (sample ``i`` uses ``fold_in(key, i)``).
      problem: the decision problem.
      model: true conditional with ``model.sample(key, x, num_samples) -> (M, d)``.
      features: ``(N, p)`` test features.
      tail_prob: the paper's alpha in (0, 1].
      num_samples: M, the SAA size of the reference (large: the paper's "true" optimum).
      chunk_size: instances solved per vmapped call (bounds memory).
    """
    check_open_unit(tail_prob, "tail_prob", closed_right=True)
    if int(num_samples) < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    x = jnp.asarray(features)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"features must have shape (N, p) with N >= 1, got {x.shape}")
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(x.shape[0]))
    samples = jax.vmap(lambda k, xi: model.sample(k, xi, int(num_samples)))(keys, x)
    solve = lambda s: _reference_solve(problem, s, float(tail_prob), int(iterations))  # noqa: E731
    w_star, f_star = _chunked(solve, (samples,), int(chunk_size))
    return RegretReference(samples, w_star, f_star, float(tail_prob))


@partial(jax.jit, static_argnums=(2, 3))
def _reference_solve(problem, samples, tail_prob, iterations):
    w = jax.vmap(lambda s: decision(problem, s, tail_prob, reg=0.0, iterations=iterations))(samples)
    return w, jax.vmap(lambda s, wi: objective(problem, s, wi))(samples, w)


_FORMS = ("cvar_of_difference", "difference_of_cvars")


def cvar_regret(
    decisions: Float[ArrayLike, "N d"],
    reference: RegretReference,
    problem: DecisionProblem,
    *,
    per_instance: bool = False,
    form: str = "cvar_of_difference",
) -> Array:
    """Gen-DFL eq. (9) in percent for ``decisions: (N, d)`` against a cached reference.

    ``form``: ``"cvar_of_difference"`` (eq. (9), default) or ``"difference_of_cvars"``
    (the CVaR gap; see the module docstring).
    """
    if form not in _FORMS:
        raise ValueError(f"form must be one of {_FORMS}, got {form!r}")
    w = jnp.asarray(decisions)
    if w.shape != reference.decisions.shape:
        raise ValueError(
            f"decisions must have shape {reference.decisions.shape}, got {w.shape}"
        )
    w = w.astype(reference.samples.dtype)
    f_hat = jax.vmap(lambda s, wi: objective(problem, s, wi))(reference.samples, w)
    if form == "cvar_of_difference":
        tail = cvar(f_hat - reference.optimal_costs, reference.tail_prob)
    else:
        tail = cvar(f_hat, reference.tail_prob) - cvar(reference.optimal_costs, reference.tail_prob)
    ratio = 100.0 * tail / jnp.abs(jnp.mean(reference.optimal_costs, axis=-1))
    return ratio if per_instance else jnp.mean(ratio)


def normalized_regret(
    decisions: Float[ArrayLike, "N d"],
    costs: Float[ArrayLike, "N d"],
    problem: DecisionProblem,
    oracle: Callable[[Array], Array],
    *,
    optimal: Float[ArrayLike, "N d"] | None = None,
) -> Array:
    """PyEPO's normalised regret (a fraction) of ``decisions`` on realised ``costs``.

    ``optimal``: cached hindsight-optimal decisions w*(c_i); computed by ``oracle`` if None.
    """
    c = jnp.asarray(costs)
    w = jnp.asarray(decisions)
    if c.ndim != 2 or w.shape != c.shape:
        raise ValueError(f"decisions {w.shape} and costs {c.shape} must both be (N, d)")
    dtype = jnp.result_type(c.dtype, float)
    c, w = c.astype(dtype), w.astype(dtype)
    w_opt = jax.vmap(oracle)(c) if optimal is None else jnp.asarray(optimal, dtype)
    f_hat = jax.vmap(lambda ci, wi: objective(problem, ci, wi))(c, w)
    f_opt = jax.vmap(lambda ci, wi: objective(problem, ci, wi))(c, w_opt)
    return jnp.sum(f_hat - f_opt) / jnp.sum(jnp.abs(f_opt))


def hindsight_optimal(costs: np.ndarray, oracle: Callable[[Array], Array]) -> Array:
    """w*(c_i) for each row of ``costs`` (to cache for :func:`normalized_regret`)."""
    return jax.jit(jax.vmap(oracle))(jnp.asarray(costs))

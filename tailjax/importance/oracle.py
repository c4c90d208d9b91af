"""IS oracles (tutorial Algorithm 2) and IS schemes: how to pick, and draw from, an IS law
at a decision (u, theta).

An :class:`ISScheme` is a pair of pure functions

* ``choose(key, u, theta) -> params``: the oracle, an IS parameter for the decision;
* ``sample(key, params, n) -> (z, log_lr)``: ``n`` draws of that IS law (``n`` static) with
  their log-likelihood ratios log f_X(z) / g(z),

used by retrospective approximation (a fresh law per stage) and stochastic approximation
(a fresh law every m steps). Schemes: :func:`plain_scheme` (SAA, no IS),
:func:`gaussian_tilting_scheme` and :func:`tilting_scheme` (exponential tilting at the
dominating points of a piecewise-linear loss), :func:`self_structuring_scheme` (T_h with h
from :func:`self_structuring_oracle`).

The self-structuring oracle minimises the second moment of the IS estimator of
E (l - u)_+ under g_h (the law of T_h(X)),

    M2(h; u, theta) = E_{g_h}[((l(Z, theta) - u)_+ L_h(Z))^2] = E_f[(l(X, theta) - u)_+^2 L_h(X)],

estimated on ONE set of m pilot samples for all h (common random numbers, so the empirical
curve is smooth in h): Y_i = T_{h_j}(X_i) with X_i ~ f_X and the grid point h_j taken in
turn, i.e. Y_i drawn from the defensive mixture g_mix = (1/G) sum_j g_{h_j}. Then

    M2_hat(h) = (1/m) sum_i (l(Y_i, theta) - u)_+^2 f(Y_i)^2 / (g_h(Y_i) g_mix(Y_i)),

unbiased for every h, with g_h(y) evaluated through the inverse transform
(:func:`~tailjax.importance.self_structuring.self_structuring_log_density`). The grid
minimiser (``vmap`` over h) is refined by golden-section search in log h. Estimating M2(h)
from samples of g_h itself would be unreliable: when g_h misses the region just beyond u the
empirical M2 is biased low, which favours exactly the worst h.

Fallback. The estimate is trusted when at least ``min_hits`` pilot draws exceed u. With
fewer (u far in the tail for every stretch on the grid, or a small pilot), the candidates
are the grid points whose own draws (those stretched by T_{h_j}) reached beyond u, and the
one of smallest estimated M2 among them is returned (``OracleInfo.fallback = 1``); with no
draw beyond u at all, the nominal law (s_h = 1, T_h the identity: plain sampling, which
cannot do worse than no IS) is returned (``fallback = 2``). A light-tailed problem with a
known MGF can use :func:`gaussian_tilting_scheme` / :func:`tilting_scheme` instead.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import (
    check_int,
    check_open_unit,
    check_positive,
    is_concrete,
    nan_where,
    traced_out_of_range,
)
from tailjax.importance.distributions import Distribution
from tailjax.importance.estimators import SampleLoss, sample_losses
from tailjax.importance.self_structuring import (
    self_structuring_log_density,
    self_structuring_log_lr,
    self_structuring_transform,
)
from tailjax.importance.tilting import (
    gaussian_dominating_points,
    gaussian_log_mgf,
    dominating_points,
    mixture_params,
    sample_gaussian_mixture,
    sample_tilted_mixture,
)

__all__ = [
    "ISScheme",
    "OracleInfo",
    "plain_scheme",
    "self_structuring_oracle",
    "self_structuring_scheme",
    "gaussian_tilting_scheme",
    "tilting_scheme",
    "default_h_grid",
]

_GOLDEN = 0.6180339887498949


class ISScheme(NamedTuple):
    """An importance-sampling scheme: how to pick an IS law at a decision and draw from it.

    A sampling scheme, not a trainer (it holds no state and takes no optimisation step):
    ``choose(key, u, theta) -> params`` is the oracle, ``sample(key, params, n) -> (z: (n,
    d), log_lr: (n,))`` draws ``n`` (static) samples of the chosen law with their
    log-likelihood ratios log f_X(z) / g(z). Both are pure and jittable; ``params`` is any
    pytree. The optimisers of :mod:`tailjax.stochopt` consume schemes.
    """

    choose: Callable[[Array, Array, Any], Any]
    sample: Callable[[Array, Any, int], tuple[Array, Array]]


class OracleInfo(NamedTuple):
    h_grid: Array  # (G,)
    log_m2_grid: Array  # (G,) log M2 on the grid (+inf where discarded)
    log_m2: Array  # log M2 at the returned h (+inf for the nominal law)
    hits: Array  # (G,) pilot draws of each grid point beyond u
    fallback: Array  # () int: 0 trusted estimate; 1 < min_hits hits in all, best h among
    #                  those with hits; 2 no hit, the nominal law (s_h = 1, no IS)


def default_h_grid(tail_prob: float, num: int = 24, max_scale: float = 64.0) -> np.ndarray:
    """h values whose scales s_h run geometrically from 1 (no transform) to ``max_scale``.

    ``tail_prob`` (the tutorial's beta) must be concrete (a float, not a tracer); ``num >= 2``
    and ``max_scale > 0``.
    """
    check_open_unit(tail_prob, "tail_prob")
    check_positive(max_scale, "max_scale")
    num = check_int(num, "num", minimum=2)
    if not is_concrete(tail_prob):
        raise ValueError("tail_prob must be concrete to build the default h_grid; pass h_grid")
    unit = float(max(np.log(np.log(1.0 / tail_prob)), 1.0))
    return np.geomspace(1.0, max_scale, num) / unit


def _check_counts(refine_steps, min_hits) -> tuple[int, int]:
    return check_int(refine_steps, "refine_steps", minimum=0), check_int(min_hits, "min_hits", minimum=0)


def _check_oracle_args(grid, tail_prob, rho, refine_steps, min_hits) -> tuple[int, int]:
    """Static checks of the oracle's grid and counts (the grid's values when concrete);
    returns ``(refine_steps, min_hits)`` as ints."""
    if grid.ndim != 1 or grid.shape[0] < 2:
        raise ValueError(f"h_grid must be 1-D with at least 2 points, got shape {grid.shape}")
    counts = _check_counts(refine_steps, min_hits)
    if is_concrete(grid):
        if not np.all(np.asarray(grid) > 0):
            raise ValueError("h_grid must be > 0 (found a value <= 0 or NaN)")
        if is_concrete(tail_prob) and is_concrete(rho):
            unit = max(float(np.log(np.log(1.0 / float(tail_prob)))), 1.0)
            if np.any(np.asarray(grid) * unit <= np.exp(-float(rho))):
                raise ValueError(
                    f"h_grid must exceed e^(-rho) / max(log log(1/tail_prob), 1) = "
                    f"{np.exp(-float(rho)) / unit:.4g} (s_h > e^(-rho): T_h invertible)"
                )
    return counts


def _probe_log_density(dist: Distribution) -> None:
    with jax.ensure_compile_time_eval():  # also when the scheme is built under jit
        x = dist.sample(jax.random.PRNGKey(0), 8)
        lp = np.asarray(jax.vmap(dist.log_prob)(x))
    if np.any(np.isnan(lp)):
        raise ValueError("log_density (dist.log_prob) returned NaN on samples of dist")


def plain_scheme(dist: Distribution) -> ISScheme:
    """No IS: samples of f_X with log_lr = 0 (SAA)."""

    def choose(key, u, theta):
        return jnp.zeros(())

    def sample(key, params, n):
        z = dist.sample(key, n)
        return z, jnp.zeros(z.shape[0], z.dtype)

    return ISScheme(choose, sample)


def self_structuring_oracle(
    key: Array,
    u: Float[ArrayLike, ""],
    theta: Any,
    dist: Distribution,
    loss: SampleLoss,
    tail_prob: float,
    *,
    rho: float = 1.0,
    h_grid: Float[ArrayLike, " G"] | None = None,
    pilot_size: int = 2048,
    refine_steps: int = 12,
    min_hits: int = 10,
) -> tuple[Float[Array, ""], OracleInfo]:
    """Algorithm 2: h minimising the estimated second moment M2(h; u, theta).

    Args:
      key: PRNG key for the m = ``pilot_size`` nominal samples.
      u, theta: the decision.
      dist: nominal law of X.  loss: ``loss(x, theta)``.
      tail_prob: tail mass in (0, 1) of the loss (the tutorial's beta).
      rho: growth rate of the loss.
      h_grid: increasing grid of h > 0 (default :func:`default_h_grid`); the pilot samples
        come from the equal mixture of the g_h on this grid.
      refine_steps: golden-section steps in log h around the best grid point.
      min_hits: pilot draws beyond u needed to trust the estimated M2 on the whole grid;
        below, only grid points with hits of their own are candidates, and with no hit
        at all the nominal law is returned (``OracleInfo.fallback``).

    Returns:
      ``(h, OracleInfo)`` with the estimated log M2 on the grid and at h. Traced
      ``tail_prob``, ``rho`` or ``h_grid`` out of range give NaN for h and the log M2s.
    """
    check_open_unit(tail_prob, "tail_prob")
    check_positive(rho, "rho")
    grid = jnp.asarray(default_h_grid(tail_prob) if h_grid is None else h_grid)
    refine_steps, min_hits = _check_oracle_args(grid, tail_prob, rho, refine_steps, min_hits)
    invalid = (traced_out_of_range(tail_prob) | traced_out_of_range(rho, high=float("inf"))
               | (False if is_concrete(grid) else ~jnp.all(grid > 0)))
    pilot_size = check_int(pilot_size, "pilot_size")
    if pilot_size < grid.shape[0]:
        raise ValueError(f"pilot_size must be >= the grid size {grid.shape[0]}, got {pilot_size}")
    x = dist.sample(key, pilot_size)
    grid = grid.astype(x.dtype)
    u = jnp.asarray(u, x.dtype)
    G = grid.shape[0]
    h_of_sample = grid[jnp.arange(pilot_size) % G]
    y = jax.vmap(lambda xi, h: self_structuring_transform(xi, h, tail_prob, rho))(x, h_of_sample)
    log_f = jax.vmap(dist.log_prob)(y)
    excess = jnp.maximum(sample_losses(loss, y, theta) - u, 0.0)
    point = jnp.arange(pilot_size) % G
    hits = jnp.zeros((G,), jnp.int32).at[point].add((excess > 0).astype(jnp.int32))
    trusted = jnp.sum(hits) >= min_hits
    eligible = trusted | (hits > 0)

    def log_g(h):  # log g_h(Y_i) for all i
        return jax.vmap(lambda yi: self_structuring_log_density(yi, h, tail_prob, dist.log_prob, rho))(y)

    log_g_grid = jax.vmap(log_g)(grid)  # (G, m)
    log_g_mix = logsumexp(log_g_grid, axis=0) - jnp.log(jnp.asarray(G, x.dtype))
    log_m = jnp.log(jnp.asarray(pilot_size, x.dtype))

    def criterion_from(log_gh):
        value = logsumexp(2.0 * log_f - log_gh - log_g_mix, b=excess**2) - log_m
        return jnp.where(jnp.isfinite(value), value, jnp.inf)

    values = jnp.where(eligible, jax.vmap(criterion_from)(log_g_grid), jnp.inf)
    j = jnp.argmin(values)
    # refine between the neighbours that are candidates themselves
    lo = jnp.log(jnp.where(eligible[jnp.maximum(j - 1, 0)], grid[jnp.maximum(j - 1, 0)], grid[j]))
    hi = jnp.log(jnp.where(eligible[jnp.minimum(j + 1, G - 1)], grid[jnp.minimum(j + 1, G - 1)], grid[j]))

    def golden(_, state):
        a, b = state
        c = b - _GOLDEN * (b - a)
        d = a + _GOLDEN * (b - a)
        left = criterion_from(log_g(jnp.exp(c))) <= criterion_from(log_g(jnp.exp(d)))
        return jnp.where(left, a, c), jnp.where(left, d, b)

    a, b = jax.lax.fori_loop(0, refine_steps, golden, (lo, hi))
    h_ref = jnp.exp(0.5 * (a + b))
    v_ref = criterion_from(log_g(h_ref))
    better = v_ref < values[j]
    h = jnp.where(better, h_ref, grid[j])
    log_m2 = jnp.where(better, v_ref, values[j])
    none = ~jnp.any(hits > 0)
    nominal = 1.0 / jnp.maximum(jnp.log(jnp.log(1.0 / jnp.asarray(tail_prob, x.dtype))), 1.0)
    h = jnp.where(none, nominal, h)
    log_m2 = jnp.where(none, jnp.inf, log_m2)
    fallback = jnp.where(trusted, 0, jnp.where(none, 2, 1)).astype(jnp.int32)
    h, values, log_m2 = nan_where(invalid, (h, values, log_m2))
    return h, OracleInfo(grid, values, log_m2, hits, fallback)


def self_structuring_scheme(
    dist: Distribution,
    loss: SampleLoss,
    tail_prob: float,
    *,
    rho: float = 1.0,
    h_grid: Float[ArrayLike, " G"] | None = None,
    pilot_size: int = 2048,
    refine_steps: int = 12,
    min_hits: int = 10,
) -> ISScheme:
    """Self-structuring IS with h chosen by :func:`self_structuring_oracle`.

    Arguments as in :func:`self_structuring_oracle`; ``params`` of the scheme is h.
    ``dist.log_prob`` is probed once on a few samples and a ``ValueError`` is raised if it
    returns NaN. ``tail_prob`` may be traced (the scheme built inside ``jit``, e.g. to share
    one program across tail levels); ``choose`` then needs an explicit ``h_grid``.
    """
    check_open_unit(tail_prob, "tail_prob")
    check_positive(rho, "rho")
    refine_steps, min_hits = _check_counts(refine_steps, min_hits)
    pilot_size = check_int(pilot_size, "pilot_size")  # its range is checked against the grid
    if h_grid is not None:
        _check_oracle_args(jnp.asarray(h_grid), tail_prob, rho, refine_steps, min_hits)
    _probe_log_density(dist)

    def choose(key, u, theta):
        h, _ = self_structuring_oracle(
            key, u, theta, dist, loss, tail_prob, rho=rho, h_grid=h_grid,
            pilot_size=pilot_size, refine_steps=refine_steps, min_hits=min_hits,
        )
        return h

    def sample(key, h, n):
        x = dist.sample(key, n)
        return jax.vmap(lambda xi: self_structuring_log_lr(xi, h, tail_prob, dist.log_prob, rho))(x)

    return ISScheme(choose, sample)


def gaussian_tilting_scheme(
    mean: Float[ArrayLike, " d"],
    cov: Float[ArrayLike, "d d"],
    pieces: Callable[[Any], tuple[Array, Array]],
    *,
    weighting: str = "uniform",
) -> ISScheme:
    """Exponential tilting for X ~ N(mean, cov), closed-form dominating points.

    ``pieces(theta) -> (G: (k, d), c: (k,))`` describes the loss
    l(x, theta) = max_i G_i^T x + c_i; the oracle tilts at the dominating point of every
    half-space {G_i^T x >= u - c_i}.
    """
    mean = jnp.asarray(mean)
    if mean.ndim != 1 or mean.shape[0] == 0:
        raise ValueError(f"mean must be a non-empty 1-D vector, got shape {mean.shape}")
    cov = jnp.asarray(cov, mean.dtype)
    if cov.shape != (mean.shape[0],) * 2:
        raise ValueError(f"cov must have shape {(mean.shape[0],) * 2} (mean's dimension), got {cov.shape}")
    chol = jnp.linalg.cholesky(cov)
    if is_concrete(chol) and not bool(jnp.all(jnp.isfinite(chol))):
        raise ValueError("cov must be symmetric positive definite (its Cholesky factor is not finite)")

    def log_mgf(b):
        return gaussian_log_mgf(b, mean, cov)

    def choose(key, u, theta):
        G, c = pieces(theta)
        G = jnp.asarray(G, mean.dtype)
        a, b, _ = gaussian_dominating_points(G, jnp.asarray(u, mean.dtype) - c, mean, cov)
        return mixture_params(log_mgf, a, b, weighting)

    def sample(key, params, n):
        return sample_gaussian_mixture(key, params, n, chol)

    return ISScheme(choose, sample)


def tilting_scheme(
    log_mgf: Callable[[Array], Array],
    tilted_sampler: Callable[[Array, Array, int], Array],
    pieces: Callable[[Any], tuple[Array, Array]],
    *,
    weighting: str = "uniform",
) -> ISScheme:
    """Exponential tilting for a generic light-tailed X given its log-MGF.

    Dominating points by :func:`tailjax.importance.tilting.dominating_point` (Newton);
    ``tilted_sampler(key, b, n)`` draws from exp(b^T x - Lambda(b)) f_X(x).
    """

    def choose(key, u, theta):
        G, c = pieces(theta)
        a, b = dominating_points(log_mgf, G, jnp.asarray(u, G.dtype) - c)
        return mixture_params(log_mgf, a, b, weighting)

    def sample(key, params, n):
        return sample_tilted_mixture(key, params, n, tilted_sampler)

    return ISScheme(choose, sample)


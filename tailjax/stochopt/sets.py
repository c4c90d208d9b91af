"""Convex polyhedral decision sets Theta: Euclidean projection, linear minimisation, and
the inequality/equality description used by the LP/QP solvers.

Each set is a frozen dataclass registered as a pytree (arrays are leaves, the dimension is
static), so it can be closed over or passed through ``jit``. Every set offers

* ``project(y)``: the Euclidean projection onto Theta of one point ``y: (d,)`` (vmap for a
  batch), exact up to floating point;
* ``lmo(c)``: a minimiser of ``c^T theta`` over Theta (a vertex) and its value, exactly;
* ``constraints(dtype)``: ``(G, h, A, b)`` with Theta = {theta : G theta <= h, A theta = b}.

Sets: :class:`Simplex` ({theta >= 0, 1^T theta = r}), :class:`CappedSimplex`
({theta >= 0, 1^T theta <= r}), :class:`Box` ({lo <= theta <= hi}) and
:class:`TargetReturnSimplex` (the simplex with a floor on the mean return,
{theta >= 0, 1^T theta = r, mu^T theta >= t}, the tutorial's Example 1).
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import check_int, check_positive, is_concrete, traced_out_of_range

__all__ = ["Simplex", "CappedSimplex", "Box", "TargetReturnSimplex", "project_simplex"]

_BISECTION_STEPS = 100


def project_simplex(y: Float[ArrayLike, " d"], radius: float | Array = 1.0) -> Float[Array, " d"]:
    """Euclidean projection of ``y: (d,)`` onto {theta >= 0, sum(theta) = radius} (sort-based).

    ``radius > 0``: a concrete one that is not raises ``ValueError``; a traced one, or a NaN
    entry of ``y``, gives NaN.
    """
    y = jnp.asarray(y)
    if y.ndim != 1 or y.shape[0] == 0:
        raise ValueError(f"y must be a non-empty vector (d,), got shape {y.shape}")
    check_positive(radius, "radius")
    y = y.astype(jnp.result_type(y.dtype, float))
    d = y.shape[-1]
    r = jnp.asarray(radius, y.dtype)
    invalid = traced_out_of_range(r, high=float("inf")) | jnp.any(jnp.isnan(y))
    mu = -jnp.sort(-y)
    cssv = jnp.cumsum(mu) - r
    ind = jnp.arange(1, d + 1).astype(y.dtype)
    cond = mu - cssv / ind > 0
    rho = jnp.sum(cond.astype(jnp.int32))
    tau = cssv[rho - 1] / rho.astype(y.dtype)
    return jnp.where(invalid, jnp.nan, jnp.maximum(y - tau, 0.0))


def _check_dim(obj) -> None:
    """Check ``obj.dim`` and store it as a Python int (a frozen dataclass field)."""
    object.__setattr__(obj, "dim", check_int(obj.dim, "dim", minimum=1))


def _eye(d, dtype):
    return jnp.eye(d, dtype=dtype)


@partial(jax.tree_util.register_dataclass, data_fields=["radius"], meta_fields=["dim"])
@dataclasses.dataclass(frozen=True)
class Simplex:
    """{theta in R^dim : theta >= 0, sum(theta) = radius}."""

    dim: int
    radius: float | Array = 1.0

    def __post_init__(self):
        _check_dim(self)
        check_positive(self.radius, "radius")

    def project(self, y: Float[ArrayLike, " d"]) -> Float[Array, " d"]:
        return project_simplex(y, self.radius)

    def lmo(self, c: Float[ArrayLike, " d"]) -> tuple[Float[Array, " d"], Float[Array, ""]]:
        c = jnp.asarray(c)
        r = jnp.asarray(self.radius, c.dtype)
        j = jnp.argmin(c)
        return r * jax.nn.one_hot(j, self.dim, dtype=c.dtype), r * c[j]

    def constraints(self, dtype=jnp.float32):
        d = self.dim
        G, h = -_eye(d, dtype), jnp.zeros(d, dtype)
        A, b = jnp.ones((1, d), dtype), jnp.asarray(self.radius, dtype).reshape(1)
        return G, h, A, b

    def feasible_point(self, dtype=jnp.float32) -> Array:
        return jnp.full(self.dim, 1.0 / self.dim, dtype) * jnp.asarray(self.radius, dtype)


@partial(jax.tree_util.register_dataclass, data_fields=["radius"], meta_fields=["dim"])
@dataclasses.dataclass(frozen=True)
class CappedSimplex:
    """{theta in R^dim : theta >= 0, sum(theta) <= radius} (e.g. the farmer's land)."""

    dim: int
    radius: float | Array = 1.0

    def __post_init__(self):
        _check_dim(self)
        check_positive(self.radius, "radius")

    def project(self, y: Float[ArrayLike, " d"]) -> Float[Array, " d"]:
        y = jnp.asarray(y)
        r = jnp.asarray(self.radius, y.dtype)
        clipped = jnp.maximum(y, 0.0)
        return jnp.where(jnp.sum(clipped) <= r, clipped, project_simplex(y, r))

    def lmo(self, c: Float[ArrayLike, " d"]) -> tuple[Float[Array, " d"], Float[Array, ""]]:
        c = jnp.asarray(c)
        r = jnp.asarray(self.radius, c.dtype)
        j = jnp.argmin(c)
        use = c[j] < 0
        x = jnp.where(use, r, 0.0) * jax.nn.one_hot(j, self.dim, dtype=c.dtype)
        return x, jnp.where(use, r * c[j], jnp.zeros((), c.dtype))

    def constraints(self, dtype=jnp.float32):
        d = self.dim
        G = jnp.concatenate([-_eye(d, dtype), jnp.ones((1, d), dtype)])
        h = jnp.concatenate([jnp.zeros(d, dtype), jnp.asarray(self.radius, dtype).reshape(1)])
        return G, h, jnp.zeros((0, d), dtype), jnp.zeros((0,), dtype)

    def feasible_point(self, dtype=jnp.float32) -> Array:
        return jnp.full(self.dim, 0.5 / self.dim, dtype) * jnp.asarray(self.radius, dtype)


@partial(jax.tree_util.register_dataclass, data_fields=["lower", "upper"], meta_fields=[])
@dataclasses.dataclass(frozen=True)
class Box:
    """{theta : lower <= theta <= upper} (elementwise; ``lower``/``upper`` of shape (d,), not
    NaN; traced bounds that are NaN or crossed give a NaN projection)."""

    lower: Array
    upper: Array

    def __post_init__(self):
        if jnp.shape(self.lower) != jnp.shape(self.upper) or jnp.ndim(self.lower) != 1:
            raise ValueError(
                f"lower and upper must be 1-D of one shape, got {jnp.shape(self.lower)} "
                f"and {jnp.shape(self.upper)}"
            )
        for name in ("lower", "upper"):
            if is_concrete(getattr(self, name)) and np.any(np.isnan(np.asarray(getattr(self, name)))):
                raise ValueError(f"{name} must not be NaN")
        if is_concrete(self.lower) and is_concrete(self.upper):
            if np.any(np.asarray(self.lower) > np.asarray(self.upper)):
                raise ValueError("lower must be <= upper elementwise")

    @property
    def dim(self) -> int:
        return int(jnp.shape(self.lower)[0])

    def project(self, y: Float[ArrayLike, " d"]) -> Float[Array, " d"]:
        y = jnp.asarray(y)
        lo, hi = jnp.asarray(self.lower, y.dtype), jnp.asarray(self.upper, y.dtype)
        invalid = jnp.any(jnp.isnan(lo) | jnp.isnan(hi) | (lo > hi))
        return jnp.where(invalid, jnp.nan, jnp.clip(y, lo, hi))

    def lmo(self, c: Float[ArrayLike, " d"]) -> tuple[Float[Array, " d"], Float[Array, ""]]:
        c = jnp.asarray(c)
        x = jnp.where(c > 0, jnp.asarray(self.lower, c.dtype), jnp.asarray(self.upper, c.dtype))
        return x, jnp.dot(c, x)

    def constraints(self, dtype=jnp.float32):
        d = self.dim
        G = jnp.concatenate([_eye(d, dtype), -_eye(d, dtype)])
        h = jnp.concatenate([jnp.asarray(self.upper, dtype), -jnp.asarray(self.lower, dtype)])
        return G, h, jnp.zeros((0, d), dtype), jnp.zeros((0,), dtype)

    def feasible_point(self, dtype=jnp.float32) -> Array:
        return 0.5 * (jnp.asarray(self.lower, dtype) + jnp.asarray(self.upper, dtype))


@partial(
    jax.tree_util.register_dataclass, data_fields=["mu", "target", "radius"], meta_fields=[]
)
@dataclasses.dataclass(frozen=True)
class TargetReturnSimplex:
    """{theta >= 0, sum(theta) = radius, mu^T theta >= target}: long-only portfolios whose
    mean return is at least ``target`` (tutorial Example 1).

    The projection solves the one-dimensional dual in the multiplier of the return
    constraint by bisection (theta(lam) = Proj_simplex(y + lam mu) has mu^T theta(lam)
    nondecreasing in lam); the LMO enumerates the vertices, which have at most two
    non-zeros (O(d^2) candidates).
    """

    mu: Array
    target: float | Array
    radius: float | Array = 1.0

    def __post_init__(self):
        if jnp.ndim(self.mu) != 1 or jnp.shape(self.mu)[0] == 0:
            raise ValueError(f"mu must be 1-D and non-empty, got shape {jnp.shape(self.mu)}")
        check_positive(self.radius, "radius")
        if is_concrete(self.target) and np.any(np.isnan(np.asarray(self.target))):
            raise ValueError("target must not be NaN")
        if is_concrete(self.mu) and is_concrete(self.target) and is_concrete(self.radius):
            best = float(np.max(np.asarray(self.mu))) * float(np.asarray(self.radius))
            if float(np.asarray(self.target)) > best:
                raise ValueError(
                    f"target {float(np.asarray(self.target))} exceeds the largest attainable "
                    f"mean return {best}: the set is empty"
                )

    @property
    def dim(self) -> int:
        return int(jnp.shape(self.mu)[0])

    def project(self, y: Float[ArrayLike, " d"]) -> Float[Array, " d"]:
        y = jnp.asarray(y)
        mu = jnp.asarray(self.mu, y.dtype)
        r = jnp.asarray(self.radius, y.dtype)
        t = jnp.asarray(self.target, y.dtype)

        def excess(lam):
            return jnp.dot(mu, project_simplex(y + lam * mu, r)) - t

        # Upper bracket by doubling: for lam large enough the projection sits on argmax(mu).
        def grow(state):
            hi, k = state
            return (excess(hi) < 0) & (k < 200)

        hi0, _ = jax.lax.while_loop(grow, lambda s: (2.0 * s[0], s[1] + 1), (jnp.ones((), y.dtype), 0))

        def body(_, bracket):
            lo, hi = bracket
            mid = 0.5 * (lo + hi)
            ok = excess(mid) >= 0
            return jnp.where(ok, lo, mid), jnp.where(ok, mid, hi)

        lo, hi = jax.lax.fori_loop(0, _BISECTION_STEPS, body, (jnp.zeros((), y.dtype), hi0))
        feasible = excess(jnp.zeros((), y.dtype)) >= 0
        return jnp.where(feasible, project_simplex(y, r), project_simplex(y + hi * mu, r))

    def lmo(self, c: Float[ArrayLike, " d"]) -> tuple[Float[Array, " d"], Float[Array, ""]]:
        c = jnp.asarray(c)
        mu = jnp.asarray(self.mu, c.dtype)
        r = jnp.asarray(self.radius, c.dtype)
        t = jnp.asarray(self.target, c.dtype) / r
        d = c.shape[0]
        inf = jnp.asarray(jnp.inf, c.dtype)
        # Single vertices e_j with mu_j >= t.
        single = jnp.where(mu >= t, c, inf)
        # Pairs (j, k) with mu_j > t > mu_k, mixed so that the return equals t.
        dmu = mu[:, None] - mu[None, :]
        ok = (mu[:, None] > t) & (mu[None, :] < t)
        w = jnp.where(ok, (t - mu[None, :]) / jnp.where(ok, dmu, 1.0), 0.0)
        pair = jnp.where(ok, w * c[:, None] + (1.0 - w) * c[None, :], inf)
        j1 = jnp.argmin(single)
        flat = jnp.argmin(pair)
        use_pair = pair.reshape(-1)[flat] < single[j1]
        j, k = flat // d, flat % d
        wj = w[j, k]
        x_pair = wj * jax.nn.one_hot(j, d, dtype=c.dtype) + (1 - wj) * jax.nn.one_hot(k, d, dtype=c.dtype)
        x = r * jnp.where(use_pair, x_pair, jax.nn.one_hot(j1, d, dtype=c.dtype))
        return x, jnp.dot(c, x)

    def constraints(self, dtype=jnp.float32):
        d = self.dim
        G = jnp.concatenate([-_eye(d, dtype), -jnp.asarray(self.mu, dtype)[None, :]])
        h = jnp.concatenate([jnp.zeros(d, dtype), -jnp.asarray(self.target, dtype).reshape(1)])
        A, b = jnp.ones((1, d), dtype), jnp.asarray(self.radius, dtype).reshape(1)
        return G, h, A, b

    def feasible_point(self, dtype=jnp.float32) -> Array:
        """A strictly interior point when one exists: the uniform portfolio pulled toward
        argmax(mu) until the return clears the target by half the remaining margin."""
        mu = jnp.asarray(self.mu, dtype)
        r = jnp.asarray(self.radius, dtype)
        t = jnp.asarray(self.target, dtype)
        uniform = jnp.full(self.dim, 1.0 / self.dim, dtype) * r
        best = r * jax.nn.one_hot(jnp.argmax(mu), self.dim, dtype=dtype)
        ru, rb = jnp.dot(mu, uniform), jnp.dot(mu, best)
        goal = t + 0.5 * (rb - t)
        a = jnp.clip((goal - ru) / jnp.maximum(rb - ru, jnp.finfo(dtype).tiny), 0.0, 1.0)
        return (1 - a) * uniform + a * best

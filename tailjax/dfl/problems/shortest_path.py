"""Shortest path on the 5x5 grid (Gen-DFL Appendix B.3), PyEPO-compatible.

Arc costs given features x (p,), as in ``pyepo.data.shortestpath.genData``:

    c = [((1/sqrt(p)) B x + 3)^deg + 1] / 3.5^deg * eps,   eps ~ U[1 - w, 1 + w]

(PyEPO divides the whole ``(.)^deg + 1`` by ``3.5^deg``), ``B_ij ~ Bernoulli(0.5)``; ``w`` is
the multiplicative noise half-width. Gen-DFL's Table 2 writes this noise as sigma = 5 for
eps ~ U[0.5, 1.5]; here ``noise_width = sigma / 10 = 0.5`` is the default.

Decision: min_w CVaR_alpha[c^T w] over unit flows from the top-left to the bottom-right node
(arcs right and down, PyEPO's arc order; 40 arcs on 5x5). The LP oracle is exact DP.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import check_int
from tailjax.dfl.problems.base import ProblemInstance, make_problem
from tailjax.layers import grid_arcs, grid_shortest_path, make_polytope

__all__ = [
    "PolynomialCostModel",
    "shortest_path_gen_data",
    "shortest_path_problem",
    "shortest_path_instance",
]


@struct.dataclass
class PolynomialCostModel:
    """True p(c|x) of PyEPO's polynomial costs with multiplicative uniform noise.

    c = scale * ((B x / sqrt(p) + 3)^deg + 1) / 3.5^deg * eps, eps ~ U[1 - w, 1 + w],
    rounded up to integers when ``ceil`` (PyEPO's knapsack values).
    """

    B: Array  # (d, p)
    deg: int = struct.field(pytree_node=False)
    noise_width: float = struct.field(pytree_node=False)
    scale: float = struct.field(pytree_node=False, default=1.0)
    ceil: bool = struct.field(pytree_node=False, default=False)

    def signal(self, x: Float[ArrayLike, " p"]) -> Float[Array, " d"]:
        x = jnp.asarray(x, self.B.dtype)
        p = self.B.shape[1]
        return self.scale * ((self.B @ x / np.sqrt(p) + 3.0) ** self.deg + 1.0) / 3.5**self.deg

    def mean(self, x: Float[ArrayLike, " p"]) -> Float[Array, " d"]:
        """E[c | x] (exact also with ``ceil``: E ceil(s U) by the uniform's CDF, per arc)."""
        s = self.signal(x)
        if not self.ceil:
            return s
        w = self.noise_width
        if w == 0:
            return jnp.ceil(s)
        lo, hi = s * (1 - w), s * (1 + w)
        # E[ceil(V)] for V ~ U[lo, hi]: sum over integers k of P(V > k), k >= 0 (V > 0).
        ks = jnp.arange(0, 64, dtype=s.dtype)
        tail = jnp.clip((hi[..., None] - ks) / (hi - lo)[..., None], 0.0, 1.0)
        return jnp.sum(tail, axis=-1)

    def sample(self, key: Array, x: Float[ArrayLike, " p"], num_samples: int) -> Float[Array, "K d"]:
        """``num_samples`` draws of c ~ p(c | x) for one ``x: (p,)``."""
        s = self.signal(x)
        w = self.noise_width
        eps = jax.random.uniform(key, (num_samples, s.shape[0]), s.dtype, 1.0 - w, 1.0 + w)
        c = s * eps
        return jnp.ceil(c) if self.ceil else c


def _check_common(num_data, num_features, deg, noise_width):
    for value, name in ((num_data, "num_data"), (num_features, "num_features"), (deg, "deg")):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not np.isfinite(noise_width) or noise_width < 0:
        raise ValueError(f"noise_width must be finite and >= 0, got {noise_width}")


def _grid(grid) -> tuple[int, int]:
    try:
        rows, cols = grid
    except (TypeError, ValueError):
        raise ValueError(f"grid must be a pair (rows, cols), got {grid!r}") from None
    return check_int(rows, "grid", minimum=1), check_int(cols, "grid", minimum=1)


def _draw(num_data, num_features, grid, deg, noise_width, seed):
    rnd = np.random.RandomState(seed)
    n, p = num_data, num_features
    d = (grid[0] - 1) * grid[1] + (grid[1] - 1) * grid[0]
    B = rnd.binomial(1, 0.5, (d, p))
    x = rnd.normal(0, 1, (n, p))
    c = (x @ B.T / np.sqrt(p) + 3) ** deg + 1
    c /= 3.5**deg
    eps = rnd.uniform(1 - noise_width, 1 + noise_width, (n, d))
    c *= eps
    return B, x, c


def shortest_path_gen_data(
    num_data: int,
    num_features: int,
    grid: tuple[int, int] = (5, 5),
    deg: int = 1,
    noise_width: float = 0.0,
    seed: int = 135,
) -> tuple[np.ndarray, np.ndarray]:
    """Same arrays as ``pyepo.data.shortestpath.genData`` (PyEPO 2.2): ``(x, c)``,
    ``x (n, p)`` float64 and ``c (n, d)`` float32."""
    _check_common(num_data, num_features, deg, noise_width)
    grid = _grid(grid)
    grid_arcs(*grid)
    _, x, c = _draw(num_data, num_features, grid, deg, noise_width, seed)
    return x, c.astype(np.float32)


def shortest_path_problem(grid: tuple[int, int] = (5, 5), *, reg: float = 0.0):
    """Unit flow from node 0 to the last node of the grid DAG (one redundant row dropped)."""
    rows, cols = _grid(grid)
    arcs = grid_arcs(rows, cols)
    nodes = rows * cols
    A = np.zeros((nodes, len(arcs)))
    for k, (u, v) in enumerate(arcs):
        A[u, k], A[v, k] = 1.0, -1.0
    b = np.zeros(nodes)
    b[0], b[-1] = 1.0, -1.0
    dtype = jnp.result_type(float)
    d = len(arcs)
    poly = make_polytope(
        jnp.zeros((d,), dtype), jnp.ones((d,), dtype), jnp.asarray(A[:-1], dtype),
        jnp.asarray(b[:-1], dtype),
    )
    return make_problem(poly, sign=1.0, reg=reg)


def shortest_path_instance(
    num_data: int = 320,
    num_features: int = 5,
    deg: int = 1,
    noise_width: float = 0.5,
    seed: int = 135,
    *,
    grid: tuple[int, int] = (5, 5),
    reg: float = 0.0,
) -> ProblemInstance:
    """Shortest-path data (PyEPO draw order), problem, true p(c|x) and DP oracle."""
    _check_common(num_data, num_features, deg, noise_width)
    B, x, c = _draw(num_data, num_features, tuple(grid), deg, noise_width, seed)
    model = PolynomialCostModel(jnp.asarray(B, jnp.result_type(float)), int(deg), float(noise_width))
    problem = shortest_path_problem(grid, reg=reg)
    oracle = lambda cost: grid_shortest_path(cost, tuple(grid))  # noqa: E731
    return ProblemInstance("shortest_path", problem, model, oracle, x, c.astype(np.float32))

"""Conditional normalizing flow p_theta(c | x) built from distrax bijectors (Gen-DFL's model).

The flow maps a standard normal base variable z in R^d to c = T_x(z), with

    T_x = standardise o affine_x o coupling_{L-1} o ... o coupling_0,

- ``coupling_i``: a distrax ``MaskedCoupling`` with alternating binary masks (coordinate j
  is kept when ``(j + i) % 2 == 0``); its conditioner, an MLP, reads the masked input and
  the context x. ``coupling="affine"`` gives RealNVP layers (shift and a tanh-bounded
  log-scale, ``|log_scale| <= max_log_scale``); ``coupling="spline"`` gives
  rational-quadratic-spline layers (:mod:`tailjax.nn.spline_coupling`) on
  ``[-spline_bound, spline_bound]``.
- ``affine_x``: an elementwise affine map whose shift and (tanh-bounded) log-scale depend on
  x alone, so a conditional mean and scale are cheap to learn.
- ``standardise``: an elementwise map ``y' = loc + exp(log_scale) * y`` whose ``loc`` and
  ``log_scale`` are parameters (``params["params"]["event_loc"]``, ``["event_log_scale"]``),
  initialised to 0 or to the ``event_loc`` / ``event_scale`` attributes. Set them to the
  training data's mean and log standard deviation (:func:`standardise_params`) so the rest
  of the flow works on standardised data. Keeping them in the parameters (not in the
  module) means one module, hence one compilation, serves every data set of a shape.

- ``support="positive"`` appends ``c = exp(y')`` (costs that are positive by construction,
  e.g. shortest-path arc costs with multiplicative noise): the flow then models log c, the
  standardisation is set from log c, and ``log_prob`` includes the Jacobian ``-sum log c``
  (``-inf`` for a non-positive coordinate). ``support="real"`` (default) stops at ``y'``.

Every other layer starts as the identity (zero-initialised last conditioner layers), so a
fresh flow is N(loc, diag(exp(2 log_scale))) for every x.

Shapes. ``c: (..., d)``, ``x: (..., p)`` with broadcastable leading axes;
``log_prob -> (...)``; ``sample(key, x, K)`` with ``x: (..., p)`` gives ``(..., K, d)``.
The methods are batched natively (Dense layers act on leading axes) and also work under
``jax.vmap``. Parameters are an explicit pytree::

    flow = ConditionalFlow(event_dim=d, context_dim=p)
    params = flow.init(key, c0, x0)                       # c0: (d,), x0: (p,)
    lp = flow.apply(params, c, x, method=ConditionalFlow.log_prob)
    c, lp = flow.apply(params, key, x, K, method=ConditionalFlow.sample_and_log_prob)

Sampling is reparameterised: gradients flow from the samples back to ``params``.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from tailjax._checks import check_int, is_concrete, nan_where
from tailjax.nn.spline_coupling import rq_spline, spline_param_count

__all__ = ["ConditionalFlow", "ConditionerMLP", "alternating_mask", "standardise_params"]

_COUPLINGS = ("affine", "spline")
_SUPPORTS = ("real", "positive")


def alternating_mask(event_dim: int, layer: int) -> Array:
    """Boolean mask of coupling layer ``layer``: True where the coordinate is kept."""
    return (jnp.arange(event_dim) + layer) % 2 == 0


class ConditionerMLP(nn.Module):
    """MLP ``[inputs] -> out_dim``, ReLU hidden layers, zero-initialised output layer."""

    hidden_sizes: Sequence[int]
    out_dim: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, inputs: Array) -> Array:
        h = inputs
        for width in self.hidden_sizes:
            h = nn.relu(nn.Dense(width, dtype=self.dtype, param_dtype=self.dtype)(h))
        return nn.Dense(
            self.out_dim,
            dtype=self.dtype,
            param_dtype=self.dtype,
            kernel_init=nn.initializers.zeros,
            bias_init=nn.initializers.zeros,
        )(h)


def _bounded(raw: Array, bound: float) -> Array:
    return bound * jnp.tanh(raw / bound)


class _Exp(distrax.Bijector):
    """Elementwise c = exp(y) (scalar event)."""

    def __init__(self):
        super().__init__(event_ndims_in=0)

    def forward_and_log_det(self, y):
        return jnp.exp(y), y

    def inverse_and_log_det(self, c):
        log_c = jnp.log(c)
        return log_c, -log_c


class ConditionalFlow(nn.Module):
    """Conditional normalizing flow p_theta(c | x); see the module docstring.

    Attributes:
      event_dim: d, the dimension of c.
      context_dim: p, the dimension of x.
      num_layers: number of coupling layers (masks alternate).
      hidden_sizes: hidden widths of every conditioner MLP.
      coupling: ``"affine"`` (RealNVP) or ``"spline"`` (rational-quadratic spline).
      max_log_scale: bound of the tanh-squashed log-scales (affine layers and affine_x).
      num_bins: spline bins (spline coupling only).
      spline_bound: the spline acts on ``[-spline_bound, spline_bound]``.
      event_loc, event_scale: initial standardisation (tuples of d floats, or None for 0/1);
        see :func:`standardise_params` to set it from data after ``init`` instead. With
        ``support="positive"`` they describe log c.
      support: ``"real"`` (c in R^d) or ``"positive"`` (c in (0, inf)^d through a final exp).
      dtype: dtype of parameters and computation (inputs are cast to it).
    """

    event_dim: int
    context_dim: int
    num_layers: int = 4
    hidden_sizes: Sequence[int] = (64, 64)
    coupling: str = "affine"
    max_log_scale: float = 3.0
    num_bins: int = 8
    spline_bound: float = 5.0
    event_loc: tuple[float, ...] | None = None
    event_scale: tuple[float, ...] | None = None
    support: str = "real"
    dtype: Any = jnp.float32

    def setup(self):
        d = check_int(self.event_dim, "event_dim", minimum=1)
        check_int(self.context_dim, "context_dim", minimum=0)
        num_layers = check_int(self.num_layers, "num_layers", minimum=0)
        if self.coupling not in _COUPLINGS:
            raise ValueError(f"coupling must be one of {_COUPLINGS}, got {self.coupling!r}")
        if self.support not in _SUPPORTS:
            raise ValueError(f"support must be one of {_SUPPORTS}, got {self.support!r}")
        if not self.max_log_scale > 0:
            raise ValueError(f"max_log_scale must be > 0, got {self.max_log_scale}")
        for name in ("event_loc", "event_scale"):
            value = getattr(self, name)
            if value is not None and len(value) != self.event_dim:
                raise ValueError(f"{name} must have event_dim={self.event_dim} entries, got {len(value)}")
        if self.event_scale is not None and min(self.event_scale) <= 0:
            raise ValueError("event_scale must be > 0 everywhere")
        per_coord = 2 if self.coupling == "affine" else spline_param_count(self.num_bins)
        self.conditioners = [
            ConditionerMLP(tuple(self.hidden_sizes), d * per_coord, self.dtype, name=f"coupling_{i}")
            for i in range(num_layers)
        ]
        self.context_affine = ConditionerMLP(tuple(self.hidden_sizes), 2 * d, self.dtype)
        loc0 = self.event_loc if self.event_loc is not None else (0.0,) * d
        scale0 = self.event_scale if self.event_scale is not None else (1.0,) * d
        self.loc = self.param("event_loc", lambda _: jnp.asarray(loc0, self.dtype))
        self.log_scale = self.param(
            "event_log_scale", lambda _: jnp.log(jnp.asarray(scale0, self.dtype))
        )

    # ----- construction of T_x -------------------------------------------------------
    def _check(self, c: Array | None, x: Array) -> None:
        if jnp.ndim(x) < 1 or jnp.shape(x)[-1] != self.context_dim:
            raise ValueError(
                f"context x must have last axis of size context_dim={self.context_dim}, "
                f"got shape {jnp.shape(x)}"
            )
        if c is not None and (jnp.ndim(c) < 1 or jnp.shape(c)[-1] != self.event_dim):
            raise ValueError(
                f"c must have last axis of size event_dim={self.event_dim}, got shape {jnp.shape(c)}"
            )

    def _coupling_inner(self, params: Any) -> distrax.Bijector:
        if self.coupling == "affine":
            shift, raw = params
            return distrax.ScalarAffine(shift=shift, log_scale=_bounded(raw, self.max_log_scale))
        return rq_spline(params, self.spline_bound)

    def _conditioner(self, net: nn.Module, x: Array):
        d = self.event_dim

        def condition(masked: Array):
            out = net(jnp.concatenate([masked, x], axis=-1))
            if self.coupling == "affine":
                return out[..., :d], out[..., d:]
            return out.reshape(out.shape[:-1] + (d, -1))

        return condition

    def bijector(self, x: Array) -> distrax.Bijector:
        """T_x as a distrax bijector acting on arrays whose batch shape equals x's."""
        x = jnp.asarray(x, self.dtype)
        d = self.event_dim
        layers = [distrax.Block(_Exp(), 1)] if self.support == "positive" else []
        layers.append(distrax.Block(distrax.ScalarAffine(shift=self.loc, log_scale=self.log_scale), 1))
        out = self.context_affine(x)
        layers.append(
            distrax.Block(
                distrax.ScalarAffine(shift=out[..., :d], log_scale=_bounded(out[..., d:], self.max_log_scale)),
                1,
            )
        )
        for i in reversed(range(self.num_layers)):
            layers.append(
                distrax.MaskedCoupling(
                    mask=alternating_mask(d, i),
                    conditioner=self._conditioner(self.conditioners[i], x),
                    bijector=self._coupling_inner,
                )
            )
        return distrax.Chain(layers)

    def _broadcast(self, a: Array, x: Array) -> tuple[Array, Array]:
        a = jnp.asarray(a, self.dtype)
        x = jnp.asarray(x, self.dtype)
        batch = jnp.broadcast_shapes(a.shape[:-1], x.shape[:-1])
        return (
            jnp.broadcast_to(a, batch + a.shape[-1:]),
            jnp.broadcast_to(x, batch + x.shape[-1:]),
        )

    def _base_log_prob(self, z: Array) -> Array:
        const = jnp.asarray(0.5 * self.event_dim * math.log(2 * math.pi), z.dtype)
        return -0.5 * jnp.sum(z * z, axis=-1) - const

    # ----- public methods --------------------------------------------------------------
    def __call__(self, c: Float[ArrayLike, "... d"], x: Float[ArrayLike, "... p"]) -> Array:
        """Same as :meth:`log_prob` (used by ``init``)."""
        return self.log_prob(c, x)

    def forward_and_log_det(self, z: Float[ArrayLike, "... d"], x: Float[ArrayLike, "... p"]):
        """c = T_x(z) and log|det dT_x/dz|; shapes ``(..., d)`` and ``(...)``."""
        self._check(z, x)
        z, x = self._broadcast(z, x)
        return self.bijector(x).forward_and_log_det(z)

    def inverse_and_log_det(self, c: Float[ArrayLike, "... d"], x: Float[ArrayLike, "... p"]):
        """z = T_x^{-1}(c) and log|det dT_x^{-1}/dc|; shapes ``(..., d)`` and ``(...)``."""
        self._check(c, x)
        c, x = self._broadcast(c, x)
        return self.bijector(x).inverse_and_log_det(c)

    def log_prob(self, c: Float[ArrayLike, "... d"], x: Float[ArrayLike, "... p"]) -> Float[Array, "..."]:
        """log p_theta(c | x), exact (change of variables); ``(...)``.

        With ``support="positive"``, ``-inf`` where a coordinate of c is <= 0.
        """
        if self.support == "positive":
            self._check(c, x)
            c = jnp.asarray(c, self.dtype)
            inside = jnp.all(c > 0, axis=-1)
            safe = jnp.where(c > 0, c, jnp.ones_like(c))
            z, ildj = self.inverse_and_log_det(safe, x)
            return jnp.where(inside, self._base_log_prob(z) + ildj, -jnp.inf)
        z, ildj = self.inverse_and_log_det(c, x)
        return self._base_log_prob(z) + ildj

    def sample_and_log_prob(
        self, key: jax.Array, x: Float[ArrayLike, "... p"], num_samples: int
    ) -> tuple[Float[Array, "... K d"], Float[Array, "... K"]]:
        """K reparameterised samples per context and their log-densities, in one pass.

        Args:
          key: PRNG key.
          x: ``(..., p)`` contexts.
          num_samples: K >= 1 samples per context.
        Returns:
          ``c: (..., K, d)`` and ``log_prob: (..., K)``.
        """
        num_samples = check_int(num_samples, "num_samples", minimum=1)
        self._check(None, x)
        x = jnp.asarray(x, self.dtype)
        z = jax.random.normal(key, x.shape[:-1] + (num_samples, self.event_dim), self.dtype)
        c, log_det = self.forward_and_log_det(z, x[..., None, :])
        return c, self._base_log_prob(z) - log_det

    def sample(self, key: jax.Array, x: Float[ArrayLike, "... p"], num_samples: int) -> Float[Array, "... K d"]:
        """K reparameterised samples per context: ``(..., K, d)``."""
        return self.sample_and_log_prob(key, x, num_samples)[0]


def standardise_params(params: Any, c: Float[ArrayLike, "n d"], *, log: bool = False) -> Any:
    """``params`` with the standardisation set to the mean and std of costs ``c: (n, d)``
    (of ``log c`` with ``log=True``, for a flow with ``support="positive"``).

    Constant columns get scale 1. Use right after ``flow.init``. ``c`` must be finite (traced
    NaN or infinite values make every parameter NaN).
    """
    c = jnp.asarray(c)
    if c.ndim != 2 or c.shape[0] < 1:
        raise ValueError(f"c must have shape (n, d) with n >= 1, got {c.shape}")
    if is_concrete(c) and not np.all(np.isfinite(np.asarray(c))):
        raise ValueError("c holds NaN or infinite values")
    if log:
        if is_concrete(c) and not bool(np.all(np.asarray(c) > 0)):
            raise ValueError("c must be > 0 everywhere for log=True (support='positive')")
        c = jnp.log(c)
    inner = dict(params["params"])
    dtype = inner["event_loc"].dtype
    if c.shape[1] != inner["event_loc"].shape[0]:
        raise ValueError(f"c must have {inner['event_loc'].shape[0]} columns, got {c.shape[1]}")
    c = c.astype(dtype)
    std = jnp.std(c, axis=0)
    std = jnp.where(std > 1e-12 * (1 + jnp.abs(jnp.mean(c, 0))), std, jnp.ones_like(std))
    inner["event_loc"] = jnp.mean(c, axis=0)
    inner["event_log_scale"] = jnp.log(std)
    out = {**params, "params": inner}
    return out if is_concrete(c) else nan_where(~jnp.all(jnp.isfinite(c)), out)

"""Rational-quadratic-spline transforms for coupling layers (neural spline flows).

A coupling layer's conditioner emits, per transformed coordinate, ``3 * num_bins + 1``
unconstrained numbers; :func:`rq_spline` turns them into a distrax
``RationalQuadraticSpline`` bijector that acts elementwise on ``[-bound, bound]`` and is the
identity outside it (``boundary_slopes="identity"``), so the flow stays invertible on the
whole real line. All-zero parameters give the identity map, which is how
:class:`tailjax.nn.conditional_flow.ConditionalFlow` initialises its spline layers.

Reference: Durkan et al., "Neural Spline Flows" (NeurIPS 2019).
"""

from __future__ import annotations

import distrax
import jax
from jaxtyping import Array, Float

from tailjax._checks import check_int

__all__ = ["spline_param_count", "rq_spline"]


class _StandardPromotion(distrax.Bijector):
    """Runs a distrax bijector under standard dtype promotion.

    distrax's spline mixes int and float literals internally, which fails when a user
    (or tailjax's test suite) enables ``jax_numpy_dtype_promotion="strict"``.
    """

    def __init__(self, inner: distrax.Bijector):
        super().__init__(event_ndims_in=inner.event_ndims_in, event_ndims_out=inner.event_ndims_out)
        self._inner = inner

    def forward_and_log_det(self, x):
        with jax.numpy_dtype_promotion("standard"):
            return self._inner.forward_and_log_det(x)

    def inverse_and_log_det(self, y):
        with jax.numpy_dtype_promotion("standard"):
            return self._inner.inverse_and_log_det(y)


def spline_param_count(num_bins: int) -> int:
    """Unconstrained parameters per coordinate of a spline with ``num_bins`` bins."""
    return 3 * check_int(num_bins, "num_bins", minimum=1) + 1


def rq_spline(params: Float[Array, "... d m"], bound: float) -> distrax.Bijector:
    """Elementwise rational-quadratic spline on ``[-bound, bound]``, identity outside.

    Args:
      params: ``(..., d, 3 * num_bins + 1)`` unconstrained knot parameters (widths,
        heights, interior slopes), one row per coordinate.
      bound: half-width of the spline's interval; must be > 0.
    """
    if not float(bound) > 0.0:
        raise ValueError(f"bound must be > 0, got {bound}")
    if (params.shape[-1] - 1) % 3 != 0 or params.shape[-1] < 4:
        raise ValueError(
            f"params must have 3 * num_bins + 1 entries on its last axis, got {params.shape[-1]}"
        )
    with jax.numpy_dtype_promotion("standard"):
        spline = distrax.RationalQuadraticSpline(
            params, range_min=-float(bound), range_max=float(bound), boundary_slopes="identity"
        )
    return _StandardPromotion(spline)

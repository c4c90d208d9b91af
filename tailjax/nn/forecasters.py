"""Small predictors used by the DRO experiments: an LSTM and an MLP one-step forecaster for
time series, and a two-layer MLP classifier.

Each takes one input or a batch (leading axes are kept) and returns the prediction.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from tailjax.nn.ddpm import _floating

__all__ = ["LSTMForecaster", "StackedLSTMForecaster", "MLPForecaster", "MLPClassifier"]


def _check_sizes(module: nn.Module, *names: str) -> None:
    for name in names:
        if getattr(module, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(module, name)}")


class LSTMForecaster(nn.Module):
    """Predict the next value of a series from its last ``n`` values.

    x: (..., n) univariate or (..., n, c) with ``in_channels=c`` -> (...,) next value (or
    (..., out_dim) when ``out_dim > 1``). One LSTM layer of ``hidden`` units, read out from
    the last hidden state by a dense layer.
    """

    hidden: int = 32
    out_dim: int = 1
    in_channels: int | None = None

    @nn.compact
    def __call__(self, x):
        _check_sizes(self, "hidden", "out_dim")
        h = x[..., None] if self.in_channels is None else x
        lead = h.shape[:-2]
        h = _floating(h.reshape((-1,) + h.shape[-2:]))
        seq = nn.RNN(nn.OptimizedLSTMCell(self.hidden))(h)
        y = nn.Dense(self.out_dim)(seq[:, -1, :])
        y = y.reshape(lead + (self.out_dim,))
        return (y[..., 0] if self.out_dim == 1 else y).astype(x.dtype)


class StackedLSTMForecaster(nn.Module):
    """Next value from the last ``n`` values with stacked LSTM layers of widths ``hidden``
    (GAS-DRO's carbon predictor: (128, 64)), read out from the last hidden state of the top
    layer: x (..., n) or (..., n, c) with ``in_channels=c`` -> (...,) (or (..., out_dim))."""

    hidden: Sequence[int] = (128, 64)
    out_dim: int = 1
    in_channels: int | None = None

    @nn.compact
    def __call__(self, x):
        if len(self.hidden) < 1 or min(self.hidden) < 1:
            raise ValueError(f"hidden must name at least one layer width, all >= 1, got {tuple(self.hidden)}")
        _check_sizes(self, "out_dim")
        h = x[..., None] if self.in_channels is None else x
        lead = h.shape[:-2]
        h = _floating(h.reshape((-1,) + h.shape[-2:]))
        for width in self.hidden:
            h = nn.RNN(nn.OptimizedLSTMCell(int(width)))(h)
        y = nn.Dense(self.out_dim)(h[:, -1, :])
        y = y.reshape(lead + (self.out_dim,))
        return (y[..., 0] if self.out_dim == 1 else y).astype(x.dtype)


class MLPForecaster(nn.Module):
    """Next value from the last ``n`` values with an MLP: x (..., n) -> (...,)."""

    features: Sequence[int] = (64, 64)

    @nn.compact
    def __call__(self, x):
        h = _floating(x)
        for width in self.features:
            h = nn.relu(nn.Dense(width)(h))
        return nn.Dense(1)(h)[..., 0].astype(x.dtype)


class MLPClassifier(nn.Module):
    """Two-layer classifier on flattened images: x (..., *image) -> scores (..., classes).

    ``hidden=8`` and squared loss against one-hot labels reproduce the GAS-DRO paper's
    digits predictor.
    """

    hidden: int = 8
    num_classes: int = 10
    image_ndim: int = 2

    @nn.compact
    def __call__(self, x):
        _check_sizes(self, "hidden", "num_classes")
        lead = x.shape[: x.ndim - self.image_ndim]
        h = _floating(x.reshape(lead + (-1,)))
        h = nn.relu(nn.Dense(self.hidden)(h))
        return nn.Dense(self.num_classes)(h).astype(x.dtype)

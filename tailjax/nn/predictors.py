"""Point predictors g_theta(x) -> c_hat for the Pred-DFL baselines (Flax linen).

``LinearPredictor`` is PyEPO's linear regression head (``nn.Linear(p, d)``);
``MLPPredictor`` adds hidden layers. Both map features ``(..., p)`` to costs ``(..., d)``;
``LogLinkPredictor`` wraps either to predict positive costs exp(g(x)) (with
:func:`tailjax.dfl.log_mse_loss`, PTO on log costs). Parameters are explicit pytrees
(``module.init`` / ``module.apply``).
"""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp
from jaxtyping import Array, Float

from tailjax._checks import check_int

__all__ = ["LinearPredictor", "MLPPredictor", "LogLinkPredictor", "make_predictor", "init_predictor"]


class LinearPredictor(nn.Module):
    """c_hat = W x + b."""

    out_dim: int

    @nn.compact
    def __call__(self, x: Float[Array, "... p"]) -> Float[Array, "... d"]:
        out_dim = check_int(self.out_dim, "out_dim", minimum=1)
        return nn.Dense(out_dim, name="linear")(x)


class MLPPredictor(nn.Module):
    """c_hat = Dense(out_dim)(act(... act(Dense(hidden[0])(x))))."""

    out_dim: int
    hidden: Sequence[int] = (64,)
    activation: Callable[[Array], Array] = nn.relu

    @nn.compact
    def __call__(self, x: Float[Array, "... p"]) -> Float[Array, "... d"]:
        out_dim = check_int(self.out_dim, "out_dim", minimum=1)
        hidden = [check_int(h, "hidden sizes") for h in self.hidden]
        if any(h < 1 for h in hidden):
            raise ValueError(f"hidden sizes must be >= 1, got {tuple(self.hidden)}")
        for i, width in enumerate(hidden):
            x = self.activation(nn.Dense(width, name=f"hidden_{i}")(x))
        return nn.Dense(out_dim, name="out")(x)


class LogLinkPredictor(nn.Module):
    """c_hat = exp(inner(x)): positive costs whose logarithm ``inner`` predicts."""

    inner: nn.Module

    def __call__(self, x: Float[Array, "... p"]) -> Float[Array, "... d"]:
        if not isinstance(self.inner, nn.Module):
            raise TypeError(f"inner must be a flax Module, got {type(self.inner).__name__}")
        return jnp.exp(self.inner(x))


def make_predictor(kind: str, out_dim: int, *, hidden: Sequence[int] = (64,)) -> nn.Module:
    """``"linear"`` or ``"mlp"``."""
    if kind == "linear":
        return LinearPredictor(out_dim)
    if kind == "mlp":
        return MLPPredictor(out_dim, tuple(hidden))
    raise ValueError(f"kind must be 'linear' or 'mlp', got {kind!r}")


def init_predictor(module: nn.Module, key: Array, num_features: int, dtype=jnp.float32):
    """Parameters for features of size ``num_features`` (>= 1)."""
    num_features = check_int(num_features, "num_features", minimum=1)
    return module.init(key, jnp.zeros((1, num_features), dtype))

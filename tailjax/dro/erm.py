"""The ML and DML baselines: empirical risk minimisation on the nominal data (ML), and on the
nominal data augmented with draws of the nominal generative model (DML)."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from tailjax.dro.ambiguity import AmbiguitySet
from tailjax.dro.predictor import batch_loss, concatenate

__all__ = ["erm_objective", "dml_dataset"]


def erm_objective(loss_fn: Callable[[Any, Any], jax.Array]):
    """``objective(params, key, batch) = mean_i f(w, x_i)`` (ML; DML on the augmented set)."""

    def objective(params, key, batch):
        del key
        return jnp.mean(batch_loss(loss_fn, params, batch))

    return objective


def dml_dataset(
    key: jax.Array,
    ambiguity_set: AmbiguitySet,
    generator_params: Any,
    data: Any,
    num_generated: int,
    chunk: int = 256,
) -> Any:
    """DML's training set: ``data`` plus ``num_generated`` draws of the nominal generator.

    ``data`` must have the structure of the generator's samples (what the loss takes).
    Draws are made ``chunk`` at a time to bound memory.
    """
    if num_generated < 0:
        raise ValueError(f"num_generated must be >= 0, got {num_generated}")
    if num_generated == 0:
        return data
    sample = jax.jit(lambda k, n: ambiguity_set.sample(k, generator_params, n)[0], static_argnums=1)
    parts, left, i = [], num_generated, 0
    while left > 0:
        n = min(chunk, left)
        parts.append(sample(jax.random.fold_in(key, i), n))
        left, i = left - n, i + 1
    return concatenate(data, *parts)

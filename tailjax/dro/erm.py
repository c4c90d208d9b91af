"""The ML and DML baselines: empirical risk minimisation on the nominal data (ML), and on the
nominal data augmented with draws of the nominal generative model (DML).

Every DRO loss in :mod:`tailjax.dro` is built on a per-sample loss ``loss_fn(w, sample) ->
scalar`` (the paper's f(w, x)); :func:`per_sample_losses` vmaps it over a batch.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from tailjax._checks import check_int
from tailjax.dro.ambiguity import AmbiguitySet

__all__ = ["per_sample_losses", "erm_loss", "dml_dataset"]

SampleLoss = Callable[[Any, Any], jax.Array]


def check_batch(batch: Any, name: str = "batch") -> int:
    """The number of samples n of ``batch`` (a pytree with leading axis n).

    Raises ``ValueError`` naming ``name`` for no arrays, a scalar leaf, leaves with different
    leading axes, or an empty leaf (n = 0 or a zero-length sample axis)."""
    leaves = jax.tree_util.tree_leaves(batch)
    if not leaves or any(jnp.ndim(a) == 0 for a in leaves):
        raise ValueError(f"{name} must hold arrays with a leading sample axis")
    sizes = {jnp.shape(a)[0] for a in leaves}
    if len(sizes) != 1:
        raise ValueError(f"{name} arrays must share their leading axis, got sizes {sorted(sizes)}")
    if any(jnp.size(a) == 0 for a in leaves):
        raise ValueError(f"{name} is empty (shapes {[jnp.shape(a) for a in leaves]})")
    return sizes.pop()


def per_sample_losses(loss_fn: SampleLoss, params: Any, batch: Any, name: str = "batch") -> Float[Array, " n"]:
    """f(w, x_i) for every sample of ``batch`` (a pytree with leading axis n): shape (n,).

    Raises ``ValueError`` naming ``name`` for a batch that :func:`check_batch` refuses."""
    check_batch(batch, name)
    return jax.vmap(loss_fn, in_axes=(None, 0))(params, batch)


def erm_loss(params: Any, batch: Any, key: jax.Array, *, loss_fn: SampleLoss) -> tuple[Array, dict]:
    """mean_i f(w, x_i) over ``batch`` (pytree, leading axis n): ``(value, {})``.

    ML trains it on the nominal data, DML on :func:`dml_dataset`;
    ``functools.partial(erm_loss, loss_fn=f)`` goes to
    :func:`tailjax.training.gradient_kernel`.
    """
    del key
    return jnp.mean(per_sample_losses(loss_fn, params, batch)), {}


def dml_dataset(
    key: jax.Array,
    ambiguity_set: AmbiguitySet,
    generator_params: Any,
    data: Any,
    num_generated: int,
    chunk: int = 256,
) -> Any:
    """DML's training set: ``data`` plus ``num_generated`` draws of the nominal generator.

    ``data`` (pytree, leading axis n) must have the structure of the generator's samples
    (what the loss takes); the result has leading axis n + num_generated. Draws are made
    ``chunk`` at a time to bound memory.
    """
    num_generated = check_int(num_generated, "num_generated", minimum=0)
    chunk = check_int(chunk, "chunk", minimum=1)
    if num_generated == 0:
        return data
    sample = jax.jit(lambda k, n: ambiguity_set.sample(k, generator_params, n)[0], static_argnums=1)
    parts, left, i = [], num_generated, 0
    while left > 0:
        n = min(chunk, left)
        parts.append(sample(jax.random.fold_in(key, i), n))
        left, i = left - n, i + 1
    return jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs, axis=0), data, *parts)

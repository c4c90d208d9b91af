"""Pretrained Flax parameters from a file: a tailjax checkpoint or a Flax msgpack file.

* A checkpoint written by :func:`tailjax.training.fit` (:mod:`tailjax.checkpoint`) holds the
  whole training state; :func:`load_params` takes its ``params`` (the state's field of that
  name, e.g. of a :class:`~tailjax.training.TrainState`).
* A Flax msgpack file is what ``flax.serialization.to_bytes(params)`` (or
  :func:`save_params`) wrote; it holds the parameter pytree only.

Either way the parameters are restored into the structure, shapes and dtypes of
``template`` (e.g. ``module.init(key, x, t)`` or its ``jax.eval_shape``); a file whose
leaves do not match raises ``ValueError`` naming the first difference. Nothing is
turned back into Python objects, so a file from elsewhere runs no code.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from tailjax import checkpoint as ckpt

__all__ = ["load_params", "save_params"]


def save_params(path: str | os.PathLike, params: Any) -> pathlib.Path:
    """Write a parameter pytree as Flax msgpack (``flax.serialization.to_bytes``); ``path``
    must not be a directory (``ValueError``)."""
    path = pathlib.Path(path)
    if path.is_dir():
        raise ValueError(f"path {path} is a directory, not a parameter file")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(serialization.to_bytes(jax.device_get(params)))
    return path


def _check_leaves(template: Any, flat: dict, source: str) -> None:
    for p, leaf in jax.tree_util.tree_flatten_with_path(template)[0]:
        name = jax.tree_util.keystr(p)
        if name not in flat:
            raise ValueError(f"{source} has no parameter {name} of the template")
        got, want = np.shape(flat[name]), np.shape(leaf)
        if tuple(got) != tuple(want):
            raise ValueError(f"{source}: parameter {name} has shape {tuple(got)}, the template {tuple(want)}")


def load_params(path: str | os.PathLike, template: Any) -> Any:
    """Parameters from ``path`` (a tailjax checkpoint or Flax msgpack) shaped like ``template``.

    Args:
      path: the file.
      template: a parameter pytree (arrays or ``jax.ShapeDtypeStruct``) of the wanted
        structure, shapes and dtypes.

    Returns:
      The parameter pytree, leaves as ``jax.Array`` in the template's dtypes.

    A directory or a file that is not msgpack raises ``ValueError`` naming ``path``.
    """
    path = pathlib.Path(path)
    if path.is_dir():
        raise ValueError(f"path {path} is a directory, not a parameter file")
    data = path.read_bytes()
    try:
        raw = serialization.msgpack_restore(data)
    except Exception as err:  # noqa: BLE001 - any parse failure means a bad file
        raise ValueError(f"path {path} is not a Flax msgpack file or a tailjax checkpoint "
                         f"({type(err).__name__}: {err})") from None
    if isinstance(raw, dict) and "header" in raw and "state" in raw:
        header = ckpt.read_header(path)
        prefix = ".params"
        flat = {k[len(prefix):]: v for k, v in raw["state"].items() if k.startswith(prefix)}
        if not flat:
            raise ValueError(f"checkpoint {path} (step {header['step']}) holds no 'params' field in its state")
        _check_leaves(template, flat, f"checkpoint {path}")
        leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
        return jax.tree_util.tree_unflatten(
            treedef, [jnp.asarray(flat[jax.tree_util.keystr(p)], dtype=leaf.dtype) for p, leaf in leaves]
        )
    template_arrays = jax.tree_util.tree_map(lambda a: np.zeros(a.shape, a.dtype), template)
    state = serialization.to_state_dict(template_arrays)
    flat_file = {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_flatten_with_path(raw)[0]}
    flat_template = {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_flatten_with_path(state)[0]}
    for name, leaf in flat_template.items():
        if name not in flat_file:
            raise ValueError(f"{path} has no parameter {name} of the template")
        if tuple(np.shape(flat_file[name])) != tuple(np.shape(leaf)):
            raise ValueError(f"{path}: parameter {name} has shape {tuple(np.shape(flat_file[name]))}, "
                             f"the template {tuple(np.shape(leaf))}")
    restored = serialization.from_state_dict(template_arrays, raw)
    return jax.tree_util.tree_map(lambda a, t: jnp.asarray(a, dtype=t.dtype), restored, template)

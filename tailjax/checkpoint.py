"""Checkpoints that know the run they belong to: msgpack arrays plus a JSON header.

A file holds ``{"header": <JSON text>, "state": {path: array}, "extra": ...}`` serialised
with :mod:`flax.serialization` (msgpack of arrays and plain data only, so loading a file someone
sent you runs no code). The header records the library version, the step, the run's
configuration and its hash, a fingerprint of the PRNG key and every state leaf's path,
shape and dtype. :func:`restore` refuses a file whose header disagrees with the run that
asks for it and names what differs.

Typed PRNG keys (``jax.random.key``) are stored as their key data and re-wrapped with the
template's implementation, so states holding either kind of key round-trip.

>>> import os, tempfile, jax, jax.numpy as jnp
>>> from tailjax import checkpoint
>>> path = os.path.join(tempfile.mkdtemp(), "state.ckpt")
>>> state = {"w": jnp.ones(3), "key": jax.random.key(0)}
>>> checkpoint.save(path, state, step=7, config={"lr": 0.1})
>>> restored, step, _ = checkpoint.restore(path, state, config={"lr": 0.1})
>>> step, restored["w"].tolist()
(7, [1.0, 1.0, 1.0])
>>> checkpoint.restore(path, state, config={"lr": 0.2})
Traceback (most recent call last):
...
tailjax.checkpoint.CheckpointError: checkpoint ... belongs to another run; differences: config.lr (checkpoint 0.1, now 0.2)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import pathlib
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from tailjax._version import __version__

__all__ = [
    "CheckpointError", "describe_config", "key_fingerprint", "save", "restore", "read_header",
    "flat_arrays", "from_flat_arrays", "to_host",
]

FORMAT = "tailjax-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or does not belong to the run."""


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _leaf_to_host(x: Any) -> np.ndarray:
    if _is_key(x):
        x = jax.random.key_data(x)
    return np.asarray(jax.device_get(x))


def describe_config(config: Any) -> Any:
    """A JSON-able, deterministic description of ``config`` (for the header and its hash).

    Mappings, dataclasses and ``NamedTuple``\\ s become objects, sequences lists, arrays
    nested lists, numbers and strings stay; anything else (a function, a module) is
    described by its type's qualified name only.
    """
    if config is None or isinstance(config, (bool, str)):
        return config
    if isinstance(config, (int, np.integer)):
        return int(config)
    if isinstance(config, (float, np.floating)):
        value = float(config)
        return value if math.isfinite(value) else repr(value)
    if hasattr(config, "_asdict"):
        return {k: describe_config(v) for k, v in config._asdict().items()}
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {f.name: describe_config(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, Mapping):
        return {str(k): describe_config(v) for k, v in sorted(config.items(), key=lambda kv: str(kv[0]))}
    if isinstance(config, (list, tuple)):
        return [describe_config(v) for v in config]
    if isinstance(config, (np.ndarray, jax.Array)):
        return describe_config(_leaf_to_host(config).tolist())
    return f"<{type(config).__module__}.{type(config).__qualname__}>"


def _hash(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def key_fingerprint(key: Any) -> str:
    """A short hash of a PRNG key's data (raw or typed key)."""
    data = _leaf_to_host(key)
    return hashlib.sha256(data.tobytes() + str(data.dtype).encode()).hexdigest()[:16]


def _flatten(tree: Any) -> dict[str, Any]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(path): leaf for path, leaf in leaves}


def _leaf_spec(x: Any) -> list:
    if _is_key(x):
        return [list(jax.random.key_data(x).shape), f"key<{jax.random.key_impl(x)}>"]
    x = np.asarray(x) if not hasattr(x, "dtype") else x
    return [list(np.shape(x)), str(x.dtype)]


def flat_arrays(tree: Any) -> dict[str, np.ndarray]:
    """``{path: host array}`` of a pytree's leaves (PRNG keys as their key data)."""
    return {p: _leaf_to_host(leaf) for p, leaf in _flatten(tree).items()}


def from_flat_arrays(template: Any, flat: Mapping[str, Any]) -> Any:
    """Inverse of :func:`flat_arrays`: the values of ``flat`` in the structure, dtypes and
    key implementations of ``template``."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    restored = []
    for p, leaf in leaves:
        value = flat[jax.tree_util.keystr(p)]
        if _is_key(leaf):
            restored.append(jax.random.wrap_key_data(jnp.asarray(value), impl=jax.random.key_impl(leaf)))
        elif isinstance(leaf, (bool, int, float)):
            restored.append(type(leaf)(value))
        elif isinstance(leaf, np.ndarray):
            restored.append(np.asarray(value, dtype=leaf.dtype))
        else:
            restored.append(jnp.asarray(value, dtype=leaf.dtype))
    return jax.tree_util.tree_unflatten(treedef, restored)


def _header(state: Any, step: int, config: Any, key: Any) -> dict:
    described = describe_config(config)
    return {
        "format": FORMAT,
        "tailjax_version": __version__,
        "step": int(step),
        "config": described,
        "config_hash": _hash(described),
        "key": None if key is None else key_fingerprint(key),
        "state": {path: _leaf_spec(leaf) for path, leaf in _flatten(state).items()},
    }


def save(path: str | os.PathLike, state: Any, *, step: int, config: Any = None,
         key: Any = None, extra: Any = None) -> None:
    """Write ``state`` (any pytree of arrays) atomically, with its header.

    ``extra``: nested dicts/lists of arrays and numbers stored beside the state and returned
    as they are by :func:`restore` (training history, evaluations, selection state).
    ``path`` must not be a directory and ``step`` must be >= 0 (``ValueError``).
    """
    path = pathlib.Path(path)
    if path.is_dir():
        raise ValueError(f"path {path} is a directory, not a checkpoint file")
    if int(step) < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    path.parent.mkdir(parents=True, exist_ok=True)
    header = _header(state, step, config, key)
    arrays = flat_arrays(state)
    payload = {"header": json.dumps(header), "state": arrays, "extra": to_host(extra)}
    data = serialization.msgpack_serialize(payload)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def to_host(tree: Any) -> Any:
    """Plain host data for storage: NamedTuples and mappings become dicts, sequences lists,
    arrays (PRNG keys as their key data) numpy arrays; numbers and strings stay."""
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    if hasattr(tree, "_asdict"):
        return {k: to_host(v) for k, v in tree._asdict().items()}
    if isinstance(tree, Mapping):
        return {str(k): to_host(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [to_host(v) for v in tree]
    return _leaf_to_host(tree)


def _load(path: pathlib.Path) -> dict:
    try:
        raw = serialization.msgpack_restore(path.read_bytes())
        header = json.loads(raw["header"])
        if header.get("format") != FORMAT:
            raise KeyError("format")
        raw["state"]  # noqa: B018 - presence check
    except FileNotFoundError:
        raise
    except Exception as err:  # noqa: BLE001 - any parse failure means a bad file
        raise CheckpointError(
            f"checkpoint {path} is truncated, corrupt or not a tailjax checkpoint "
            f"(path must name a checkpoint file; {type(err).__name__}: {err})"
        ) from None
    raw["header"] = header
    return raw


def read_header(path: str | os.PathLike) -> dict:
    """The JSON header of a checkpoint file."""
    return _load(pathlib.Path(path))["header"]


def _config_differences(saved: Any, wanted: Any, prefix: str = "config") -> list[str]:
    if isinstance(saved, dict) and isinstance(wanted, dict):
        out = []
        for k in sorted(set(saved) | set(wanted)):
            if k not in saved:
                out.append(f"{prefix}.{k} (absent in the checkpoint, now {wanted[k]!r})")
            elif k not in wanted:
                out.append(f"{prefix}.{k} (checkpoint {saved[k]!r}, absent now)")
            else:
                out.extend(_config_differences(saved[k], wanted[k], f"{prefix}.{k}"))
        return out
    return [] if saved == wanted else [f"{prefix} (checkpoint {saved!r}, now {wanted!r})"]


def restore(path: str | os.PathLike, template: Any, *, config: Any = None,
            key: Any = None) -> tuple[Any, int, Any]:
    """Read a checkpoint into the structure of ``template``: ``(state, step, extra)``.

    Raises :class:`CheckpointError` (a ``ValueError``) naming the path and what differs when
    the file is unreadable, or its configuration, key or state shapes differ from
    ``config``, ``key`` and ``template``.
    """
    path = pathlib.Path(path)
    raw = _load(path)
    header = raw["header"]
    wanted = _header(template, header["step"], config, key)
    problems = []
    if header["config_hash"] != wanted["config_hash"]:
        problems += _config_differences(header["config"], wanted["config"])
    if key is not None and header["key"] != wanted["key"]:
        problems.append("the PRNG key")
    saved_specs, wanted_specs = header["state"], wanted["state"]
    for p in sorted(set(saved_specs) | set(wanted_specs)):
        if p not in saved_specs:
            problems.append(f"state leaf {p} (in template, absent in the checkpoint)")
        elif p not in wanted_specs:
            problems.append(f"state leaf {p} (in the checkpoint, absent in template)")
        elif saved_specs[p] != wanted_specs[p]:
            (s_shape, s_dtype), (w_shape, w_dtype) = saved_specs[p], wanted_specs[p]
            problems.append(
                f"state leaf {p}: checkpoint shape {tuple(s_shape)} {s_dtype}, "
                f"template shape {tuple(w_shape)} {w_dtype}"
            )
    if problems:
        raise CheckpointError(
            f"checkpoint {path} belongs to another run; differences: " + "; ".join(problems)
        )
    state = from_flat_arrays(template, raw["state"])
    return state, int(header["step"]), raw.get("extra")

"""A generic training loop over a pure ``step`` kernel: progress bar, evaluation, and
checkpoint/resume.

Every trainer in tailjax is a pure kernel ``step(state, key, batch) -> (state, info)`` with
``NamedTuple`` state and info. :func:`fit` only drives it: it derives the key of step ``i``
as ``fold_in(key, i)`` and asks ``batch_fn(i)`` for the batch, so a run resumed from a
checkpoint continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import os
import pathlib
import pickle
from typing import Any, Callable, NamedTuple

import jax
import numpy as np

__all__ = ["fit", "FitResult", "save_checkpoint", "load_checkpoint"]


class FitResult(NamedTuple):
    state: Any
    history: dict[str, np.ndarray]  # per-step info fields, stacked
    evaluations: list[tuple[int, Any]]  # (step, eval_fn(state)) pairs


def save_checkpoint(path: str | os.PathLike, payload: Any) -> None:
    """Write ``payload`` (a pytree of arrays plus plain Python data) atomically."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    host = jax.tree_util.tree_map(
        lambda x: np.asarray(x) if isinstance(x, jax.Array) else x, payload
    )
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        pickle.dump(host, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike) -> Any:
    """Read what :func:`save_checkpoint` wrote (arrays come back as numpy arrays)."""
    with open(path, "rb") as f:
        return pickle.load(f)


def _info_to_host(info: Any) -> dict[str, np.ndarray]:
    if hasattr(info, "_asdict"):
        items = info._asdict().items()
    elif isinstance(info, dict):
        items = info.items()
    else:
        items = [("value", info)]
    return {k: np.asarray(v) for k, v in items}


def fit(
    step: Callable[[Any, jax.Array, Any], tuple[Any, Any]],
    state: Any,
    key: jax.Array,
    num_steps: int,
    *,
    batch_fn: Callable[[int], Any] | None = None,
    eval_fn: Callable[[Any], Any] | None = None,
    eval_every: int | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    progress: bool = True,
    description: str = "training",
    jit: bool = True,
) -> FitResult:
    """Run ``num_steps`` of ``step`` from ``state``; resume from ``checkpoint_path`` if present.

    Args:
      step: pure kernel ``step(state, key, batch) -> (state, info)``.
      state: initial state (ignored when a checkpoint is resumed).
      key: PRNG key; step ``i`` uses ``jax.random.fold_in(key, i)``.
      num_steps: total number of steps (including those done before a resume).
      batch_fn: ``batch_fn(i)`` gives the batch of step ``i`` (``None`` batches otherwise);
        make it a function of ``i`` so that resuming reproduces the same batches.
      eval_fn: optional ``eval_fn(state) -> metrics``, run every ``eval_every`` steps and last.
      checkpoint_path: file for state, step counter and history; written every
        ``checkpoint_every`` steps and at the end, atomically.
      progress: show a tqdm progress bar (if tqdm is installed).
      jit: compile ``step`` with ``jax.jit``.
    """
    if num_steps < 0:
        raise ValueError(f"num_steps must be >= 0, got {num_steps}")
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    start, history, evaluations = 0, [], []
    if checkpoint_path is not None and pathlib.Path(checkpoint_path).exists():
        saved = load_checkpoint(checkpoint_path)
        treedef = jax.tree_util.tree_structure(state)
        state = jax.tree_util.tree_unflatten(treedef, jax.tree_util.tree_leaves(saved["state"]))
        start, history, evaluations = saved["step"], saved["history"], saved["evaluations"]
    step_fn = jax.jit(step) if jit else step

    def checkpoint(i):
        if checkpoint_path is not None:
            payload = {"state": state, "step": i, "history": history, "evaluations": evaluations}
            save_checkpoint(checkpoint_path, payload)

    steps = range(start, num_steps)
    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=num_steps, initial=start, desc=description, leave=False)
        except ImportError:
            bar = None
    for i in steps:
        batch = batch_fn(i) if batch_fn is not None else None
        state, info = step_fn(state, jax.random.fold_in(key, i), batch)
        history.append(_info_to_host(info))
        if bar is not None:
            bar.update(1)
            bar.set_postfix({k: float(v.mean()) for k, v in history[-1].items() if v.size < 8})
        done = i + 1
        if eval_fn is not None and eval_every and done % eval_every == 0 and done < num_steps:
            evaluations.append((done, jax.device_get(eval_fn(state))))
        if done % checkpoint_every == 0:
            checkpoint(done)
    if bar is not None:
        bar.close()
    if eval_fn is not None and (not evaluations or evaluations[-1][0] != num_steps):
        evaluations.append((num_steps, jax.device_get(eval_fn(state))))
    checkpoint(num_steps)
    stacked = {k: np.stack([h[k] for h in history]) for k in history[0]} if history else {}
    return FitResult(state, stacked, evaluations)

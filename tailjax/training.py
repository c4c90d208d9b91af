"""The one training path: a gradient kernel, minibatches, and the loop that drives any kernel.

* :func:`gradient_kernel` turns ``loss(params, batch, key) -> (value, aux)`` and an optax
  optimiser into a :class:`~tailjax.base.Kernel`; it is the only place in tailjax that calls
  ``optimizer.update``. Kernels with more state wrap it.
* :func:`minibatches` gives ``batch_fn(i)``: epoch-wise shuffled minibatches, a pure function
  of the step index, so a resumed run sees the batches the uninterrupted run would have.
* :func:`fit` runs ``num_steps`` of a kernel's step with a progress bar, periodic evaluation,
  validation-based selection with optional early stopping, and checkpoint/resume.

Example, a new trainer in a few lines::

    def loss(params, batch, key):
        x, y = batch
        err = model.apply(params, x) - y
        return jnp.mean(err**2), {"max_err": jnp.max(jnp.abs(err))}

    kernel = gradient_kernel(loss, optax.adam(1e-3))
    result = fit(kernel, kernel.init(params), key, 1000,
                 batches=minibatches(data_key, (x, y), 64), checkpoint_path="run.ckpt")

A runnable one:

>>> import jax, jax.numpy as jnp, optax
>>> from tailjax.training import fit, gradient_kernel
>>> loss = lambda p, batch, key: (jnp.mean((batch - p) ** 2), {})
>>> kernel = gradient_kernel(loss, optax.sgd(0.1))
>>> result = fit(kernel, kernel.init(jnp.zeros(())), jax.random.PRNGKey(0), 100,
...              batches=jnp.array([1.0, 3.0]), progress=False)
>>> round(float(result.state.params), 4), int(result.state.step)
(2.0, 100)
"""

from __future__ import annotations

import functools
import os
import pathlib
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from tailjax import checkpoint as ckpt
from tailjax._checks import check_int
from tailjax.base import Kernel, Loss

__all__ = [
    "TrainState",
    "GradientInfo",
    "gradient_kernel",
    "minibatches",
    "FitResult",
    "fit",
]


class TrainState(NamedTuple):
    params: Any
    opt_state: Any
    step: jax.Array


class GradientInfo(NamedTuple):
    loss: jax.Array
    grad_norm: jax.Array
    aux: Any


def gradient_kernel(loss: Loss, optimizer: optax.GradientTransformation) -> Kernel:
    """One optimiser step on ``loss``: ``init(params) -> TrainState`` and
    ``step(state, key, batch) -> (TrainState, GradientInfo)``.

    ``loss(params, batch, key)`` returns ``(value, aux)``; ``aux`` is passed through to the
    info. The update runs under standard dtype promotion (optax mixes its int32 count with
    float hyper-parameters, which strict-promotion users would otherwise see fail).
    A ``loss`` that is not callable or an ``optimizer`` that is not an optax transformation
    raises ``TypeError``.
    """
    if not callable(loss):
        raise TypeError(f"loss must be callable, got {type(loss).__name__}")
    if not (callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))):
        raise TypeError(f"optimizer must be an optax GradientTransformation, got {type(optimizer).__name__}")

    def init(params: Any) -> TrainState:
        return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))

    def step(state: TrainState, key: jax.Array, batch: Any) -> tuple[TrainState, GradientInfo]:
        (value, aux), grads = jax.value_and_grad(loss, has_aux=True)(state.params, batch, key)
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
        info = GradientInfo(value, optax.global_norm(grads), aux)
        return TrainState(params, opt_state, state.step + 1), info

    return Kernel(init, step)


def minibatches(key: jax.Array, data: Any, batch_size: int, *,
                stack: int | None = None) -> Callable[[int], Any]:
    """``batch_fn(i)``: the minibatch of step ``i`` from ``data`` (a pytree of arrays with a
    common leading axis n).

    Each epoch visits the rows in the order of a permutation drawn from
    ``fold_in(key, epoch)``; an incomplete last minibatch of an epoch is skipped.
    ``batch_size`` larger than n is clipped to n. With ``stack=K``, step ``i`` gets K
    consecutive minibatches stacked on a new leading axis (e.g. one per inner step).

    ``batch_fn`` is traceable (``i`` may be a tracer inside ``jit`` or ``lax.scan``); called
    with a Python int it reuses each epoch's permutation instead of redrawing it per step.
    """
    leaves = jax.tree_util.tree_leaves(data)
    if not leaves:
        raise ValueError("data must hold at least one array")
    data = jax.tree_util.tree_map(jnp.asarray, data)
    n = jax.tree_util.tree_leaves(data)[0].shape[0]
    if any(jnp.ndim(a) == 0 or a.shape[0] != n for a in jax.tree_util.tree_leaves(data)):
        raise ValueError(
            "data arrays must share their leading axis, got shapes "
            f"{[jnp.shape(a) for a in jax.tree_util.tree_leaves(data)]}"
        )
    if n == 0:
        raise ValueError("data is empty")
    b = min(check_int(batch_size, "batch_size", minimum=1), n)
    per_epoch = n // b
    k = 1 if stack is None else check_int(stack, "stack", minimum=1)
    perms: dict[int, jax.Array] = {}  # permutations of the epochs in use (a cache, not state)

    def permutation(epoch: int) -> jax.Array:
        if epoch not in perms:
            if len(perms) > 2:
                perms.pop(min(perms))
            perms[epoch] = _permutation(key, epoch, n)
        return perms[epoch]

    def batch_fn(i: int) -> Any:
        if isinstance(i, jax.core.Tracer):  # inside jit / lax.scan: compute in the trace
            return _traced_batch(key, data, i, b, k, stack is not None)
        parts = []
        for j in range(int(i) * k, int(i) * k + k):
            epoch, slot = divmod(j, per_epoch)
            parts.append(_slice(data, permutation(epoch), slot * b, b))
        if stack is None:
            return parts[0]
        return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *parts)

    return batch_fn


def _traced_batch(key, data, i, b, k, stacked):
    n = jax.tree_util.tree_leaves(data)[0].shape[0]
    per_epoch = n // b

    def one(j):
        perm = jax.random.permutation(jax.random.fold_in(key, j // per_epoch), n)
        idx = jax.lax.dynamic_slice_in_dim(perm, (j % per_epoch) * b, b)
        return jax.tree_util.tree_map(lambda a: a[idx], data)

    js = jnp.asarray(i, jnp.int32) * k + jnp.arange(k, dtype=jnp.int32)
    out = jax.vmap(one)(js)
    return out if stacked else jax.tree_util.tree_map(lambda a: a[0], out)


@functools.partial(jax.jit, static_argnums=2)
def _permutation(key, epoch, n):
    return jax.random.permutation(jax.random.fold_in(key, epoch), n)


@functools.partial(jax.jit, static_argnums=3)
def _slice(data, perm, start, b):
    idx = jax.lax.dynamic_slice_in_dim(perm, start, b)
    return jax.tree_util.tree_map(lambda a: a[idx], data)


class FitResult(NamedTuple):
    state: Any  # final state; with ``validation``, carrying the selected ``params``
    history: dict[str, np.ndarray]  # per-step info fields, stacked
    evaluations: list[tuple[int, Any]]  # (step, value) of eval_fn, or of validation
    best_step: int | None  # step of the selected parameters (with ``validation``)


def _flat_info(info: Any) -> dict[str, np.ndarray]:
    if hasattr(info, "_asdict") or isinstance(info, dict):
        leaves, _ = jax.tree_util.tree_flatten_with_path(info)
        names = {
            ".".join(str(getattr(k, "name", getattr(k, "key", getattr(k, "idx", k)))) for k in path): leaf
            for path, leaf in leaves
        }
    else:
        names = {"value": info}
    return {k: np.asarray(v) for k, v in names.items()}


def _stack_history(history: list[dict]) -> dict[str, np.ndarray]:
    return {k: np.stack([h[k] for h in history]) for k in history[0]} if history else {}


def _host_value(value: Any) -> Any:
    """Evaluation results as plain host data (dicts, lists, numpy arrays)."""
    return ckpt.to_host(jax.device_get(value))


class _Selection(NamedTuple):
    score: float
    step: int
    params: Any
    stale: int  # evaluations since the last improvement


def fit(
    kernel: Kernel | Callable[[Any, jax.Array, Any], tuple[Any, Any]],
    state: Any,
    key: jax.Array,
    num_steps: int,
    *,
    batches: Callable[[int], Any] | Any = None,
    eval_fn: Callable[[Any], Any] | None = None,
    eval_every: int | None = None,
    validation: Callable[[Any], Any] | None = None,
    patience: int | None = None,
    checkpoint_path: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    config: Any = None,
    progress: bool = True,
    description: str = "training",
    jit: bool = True,
) -> FitResult:
    """Run ``num_steps`` of ``kernel.step`` from ``state``; resume from ``checkpoint_path``.

    Step ``i`` uses the key ``fold_in(key, i)`` and the batch ``batches(i)`` (``batches`` may
    also be a fixed pytree, given to every step, or None), so a resumed run repeats the
    uninterrupted one exactly.

    Args:
      kernel: a :class:`~tailjax.base.Kernel` (its ``step`` is used) or a bare step function.
      state: initial state (replaced by the checkpoint's when one is resumed).
      key: PRNG key (raw or typed).
      num_steps: total number of steps, those done before a resume included.
      batches: ``batches(i) -> batch`` (e.g. :func:`minibatches`), a fixed batch, or None.
      eval_fn: ``eval_fn(state) -> metrics``, every ``eval_every`` steps and at the end.
      eval_every: evaluation period (default with ``validation``: ``max(1, num_steps // 20)``).
      validation: ``validation(state) -> score`` (lower is better), evaluated on the initial
        state, every ``eval_every`` steps and at the end; the returned state carries the
        ``params`` of the best score (the optimiser state is the last one), and
        ``evaluations`` lists ``(step, score)``. A state without a ``params`` field (a
        wrapper kernel's) is selected whole: the best state itself is returned.
      patience: with ``validation``, stop after this many evaluations without improvement.
      checkpoint_path: file for the state, history and selection, written every
        ``checkpoint_every`` steps and at the end, atomically (:mod:`tailjax.checkpoint`).
        Resuming refuses a checkpoint of another configuration, key or state shape, or one
        beyond ``num_steps``, and names what differs.
      config: the run's configuration (a mapping, NamedTuple or dataclass of plain values:
        learning rate, model sizes, data description...), recorded in the checkpoint header.
      progress: show a tqdm progress bar.
      jit: compile the step with ``jax.jit``.
    """
    num_steps = check_int(num_steps, "num_steps", minimum=0)
    checkpoint_every = check_int(checkpoint_every, "checkpoint_every", minimum=1)
    if eval_every is not None:
        eval_every = check_int(eval_every, "eval_every", minimum=1)
    if patience is not None and (validation is None or check_int(patience, "patience") < 1):
        raise ValueError(f"patience must be >= 1 and needs validation, got {patience}")
    if validation is not None and eval_fn is not None:
        raise ValueError("pass either eval_fn or validation, not both")
    has_params = hasattr(state, "params") and hasattr(state, "_replace")
    chosen = (lambda st: st.params) if has_params else (lambda st: st)
    step_fn = kernel.step if isinstance(kernel, Kernel) else kernel
    if not callable(step_fn):
        raise ValueError(f"kernel must be a Kernel or a step function, got {type(kernel).__name__}")
    batch_fn = batches if callable(batches) else (lambda i, fixed=batches: fixed)
    step_fn = jax.jit(step_fn) if jit else step_fn
    if validation is not None and eval_every is None:
        eval_every = max(1, num_steps // 20)
    evaluate = validation if validation is not None else eval_fn

    start, history, evaluations, selection, stopped = 0, [], [], None, False
    path = pathlib.Path(checkpoint_path) if checkpoint_path is not None else None
    if path is not None and path.exists():
        state, start, extra = ckpt.restore(path, state, config=config, key=key)
        if start > num_steps:
            raise ckpt.CheckpointError(
                f"checkpoint {path} is at step {start}, beyond num_steps={num_steps}"
            )
        history = [dict(zip(extra["history"], v)) for v in zip(*extra["history"].values())] \
            if extra["history"] else []
        evaluations = [(int(s), v) for s, v in extra["evaluations"]]
        stopped = bool(extra["stopped"])
        if extra["selection"] is not None:
            sel = extra["selection"]
            best_params = ckpt.from_flat_arrays(chosen(state), sel["params"])
            selection = _Selection(float(sel["score"]), int(sel["step"]), best_params, int(sel["stale"]))

    def record(done: int):
        nonlocal selection, stopped
        value = _host_value(evaluate(state))
        if validation is None:
            evaluations.append((done, value))
            return
        score = float(np.asarray(value))
        evaluations.append((done, score))
        if selection is None or (np.isfinite(score) and not score >= selection.score):
            selection = _Selection(score, done, chosen(state), 0)
        else:
            selection = selection._replace(stale=selection.stale + 1)
            if patience is not None and selection.stale >= int(patience):
                stopped = True

    def save(done: int):
        if path is None:
            return
        sel = None
        if selection is not None:
            sel = {"score": selection.score, "step": selection.step, "stale": selection.stale,
                   "params": ckpt.flat_arrays(selection.params)}
        extra = {"history": _stack_history(history), "evaluations": [[s, v] for s, v in evaluations],
                 "selection": sel, "stopped": stopped}
        ckpt.save(path, state, step=done, config=config, key=key, extra=extra)

    if validation is not None and start == 0 and not evaluations:
        record(0)
    bar = tqdm(total=num_steps, initial=start, desc=description, leave=False, disable=not progress)
    done = start
    for i in range(start, num_steps):
        if stopped:
            break
        state, info = step_fn(state, jax.random.fold_in(key, i), batch_fn(i))
        history.append(_flat_info(info))
        done = i + 1
        bar.update(1)
        if progress:
            bar.set_postfix({k: float(v.mean()) for k, v in history[-1].items() if v.size < 8})
        if evaluate is not None and eval_every and done % int(eval_every) == 0 and done < num_steps:
            record(done)
        if done % int(checkpoint_every) == 0:
            save(done)
    bar.close()
    if evaluate is not None and not stopped and (not evaluations or evaluations[-1][0] != done):
        record(done)
    save(done)
    best_step = None
    if selection is not None:
        state = state._replace(params=selection.params) if has_params else selection.params
        best_step = selection.step
    return FitResult(state, _stack_history(history), evaluations, best_step)

"""One entry point that trains a predictor with any of the compared methods, with the same
predictor, data, optimiser and number of predictor updates: ML, DML, KL-DRO, W-DRO, DRAGEN,
P-DRO and GAS-DRO; plus the time and step-memory probes of the cost table. Every method is a
tailjax kernel driven by :func:`tailjax.training.fit`.
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable, NamedTuple

import jax
import numpy as np
import optax

from tailjax import dro, training

__all__ = ["METHODS", "MethodSettings", "Resources", "Method", "build_method", "train_method", "step_bytes"]

METHODS = ("ML", "DML", "KL-DRO", "W-DRO", "DRAGEN", "P-DRO", "GAS-DRO")


class MethodSettings(NamedTuple):
    steps: int = 1000  # predictor updates at most (GAS-DRO: outer iterations of one update each)
    patience: int | None = None  # with a validation score: stop after this many evaluations without gain
    eval_every: int | None = None  # validation period (default: steps // 20)
    batch_size: int = 64
    learning_rate: float = 1e-3
    kl_radius: float = 0.1
    wdro_penalty: float = 10.0
    wdro_steps: int = 10
    wdro_step_size: float = 0.02
    dragen_penalty: float = 1.0
    dragen_steps: int = 10
    dragen_step_size: float = 0.1
    pdro_kl_weight: float = 0.1  # P-DRO's tau
    pdro_learning_rate: float = 1e-2
    gas: dro.GasDroConfig = dro.GasDroConfig()
    gas_learning_rate: float = 1e-5  # generator Adam (the paper's 1e-5)
    gas_data_batch: int = 256  # nominal batch for each J estimate
    gas_select: str = "last"


def with_learning_rates(grid: dict, lrs) -> dict:
    """Every setting of ``grid`` (tag -> MethodSettings) at each predictor Adam step in ``lrs``;
    the tags gain ``lr=...``."""
    return {",".join(filter(None, (tag, f"lr={lr}"))): settings._replace(learning_rate=lr)
            for tag, settings in grid.items() for lr in lrs}


class Resources(NamedTuple):
    """What the methods need besides the training data (``None`` where unused)."""

    ambiguity_set: Any = None  # GAS-DRO
    generator_params: Any = None  # theta_0
    generator_data: Any = None  # nominal data in the generator's space, for J
    dml_data: Any = None  # data + nominal-generator draws (DML)
    wdro_where: Callable | None = None  # W-DRO: the part of a sample the adversary moves
    wdro_replace: Callable | None = None
    encode: Callable | None = None  # DRAGEN: sample -> latent
    decode: Callable | None = None  # DRAGEN: (latent, sample) -> sample
    pdro_features: Callable | None = None  # P-DRO: sample -> adversary input
    pdro_nominal: Any = None  # P-DRO: psi0 (a fitted Gaussian mixture)


class Method(NamedTuple):
    """A method ready for :func:`tailjax.training.fit`."""

    kernel: Any  # a tailjax Kernel
    state: Any
    batches: Callable[[int], Any]
    predictor_of: Callable[[Any], Any]  # final state -> predictor parameters


def _need(value, what, method):
    if value is None:
        raise ValueError(f"method {method!r} needs resources.{what}")
    return value


def step_bytes(kernel, state, key, batch) -> int | None:
    """Bytes XLA plans for one compiled kernel step (arguments + outputs + temporaries)."""
    try:
        m = jax.jit(kernel.step).lower(state, key, batch).compile().memory_analysis()
        return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
                   - m.alias_size_in_bytes)
    except Exception:  # memory analysis is not available on every backend
        return None


def build_method(
    name: str,
    key: jax.Array,
    loss_fn: Callable[[Any, Any], jax.Array],
    params: Any,
    data: Any,
    resources: Resources = Resources(),
    settings: MethodSettings = MethodSettings(),
) -> Method:
    """Kernel, initial state, minibatches (shuffled with ``key``) and predictor read-out of
    method ``name``."""
    if name not in METHODS:
        raise ValueError(f"name must be one of {METHODS}, got {name!r}")
    s = settings
    opt = optax.adam(s.learning_rate)
    batches = lambda d: training.minibatches(key, d, s.batch_size)  # noqa: E731
    last = lambda st: st.params  # noqa: E731

    def predictor(loss, train, init_params=params, read=last):
        kernel = training.gradient_kernel(functools.partial(loss, loss_fn=loss_fn), opt)
        return Method(kernel, kernel.init(init_params), batches(train), read)

    if name in ("ML", "DML"):
        return predictor(dro.erm_loss, data if name == "ML" else _need(resources.dml_data, "dml_data", name))
    if name == "KL-DRO":
        loss = functools.partial(dro.kl_dro_loss, radius=s.kl_radius)
        return predictor(loss, data, dro.kl_dro_params(params), lambda st: st.params[0])
    if name == "W-DRO":
        loss = functools.partial(dro.wasserstein_loss, penalty=s.wdro_penalty, steps=s.wdro_steps,
                                 step_size=s.wdro_step_size, where=resources.wdro_where,
                                 replace=resources.wdro_replace)
        return predictor(loss, data)
    if name == "DRAGEN":
        loss = functools.partial(dro.dragen_loss, encode=_need(resources.encode, "encode", name),
                                 decode=_need(resources.decode, "decode", name), penalty=s.dragen_penalty,
                                 steps=s.dragen_steps, step_size=s.dragen_step_size)
        return predictor(loss, data)
    if name == "P-DRO":
        kernel = dro.pdro_kernel(loss_fn, dro.gmm_log_density, opt, optax.adam(s.pdro_learning_rate),
                                 kl_weight=s.pdro_kl_weight,
                                 features=_need(resources.pdro_features, "pdro_features", name))
        state = kernel.init(params, _need(resources.pdro_nominal, "pdro_nominal", name))
        return Method(kernel, state, batches(data), lambda st: st.predictor.params)
    aset = _need(resources.ambiguity_set, "ambiguity_set", name)
    kernel = dro.gas_dro_kernel(aset, loss_fn, opt, optax.adam(s.gas_learning_rate), s.gas)
    state = kernel.init(params, _need(resources.generator_params, "generator_params", name))
    nominal = _need(resources.generator_data, "generator_data", name)
    k_gen, k_nom = jax.random.split(key)
    generator_batches = training.minibatches(k_gen, nominal, s.gas_data_batch, stack=s.gas.inner_steps)
    batch_fn = generator_batches
    if s.gas.nominal_weight > 0:  # the outer loss also sees a batch of nominal samples
        nominal_batches = training.minibatches(k_nom, data, s.batch_size)
        batch_fn = lambda i: dro.GasDroBatch(generator_batches(i), nominal_batches(i))  # noqa: E731
    return Method(kernel, state, batch_fn, lambda st: dro.select_predictor(st, s.gas_select))


def train_method(
    name: str,
    key: jax.Array,
    loss_fn: Callable[[Any, Any], jax.Array],
    params: Any,
    data: Any,
    resources: Resources = Resources(),
    settings: MethodSettings = MethodSettings(),
    progress: bool = False,
    checkpoint_path=None,
    measure_memory: bool = False,
    validation: Callable[[Any], float] | None = None,
    run: dict | None = None,
) -> tuple[Any, dict[str, Any], dict[str, np.ndarray]]:
    """Train ``params`` with method ``name`` for at most ``settings.steps`` predictor updates.

    With ``validation(predictor) -> score`` (lower is better), the predictor with the best
    score among the evaluations (every ``settings.eval_every`` steps) is returned and training
    stops after ``settings.patience`` evaluations without improvement (early stopping through
    :func:`tailjax.training.fit`; a wrapper kernel's whole state is selected).
    Returns (predictor, cost, history); ``cost["seconds"]`` is the wall time of the whole
    loop (compilation and validation included, pre-training of the nominal generators
    excluded), ``cost["steps"]`` the steps run, ``cost["best_step"]`` and
    ``cost["evaluations"]`` the selection's record and, with ``measure_memory``,
    ``cost["step_bytes"]`` the memory XLA plans for one step. ``checkpoint_path`` resumes a
    run of the same method and settings (and ``run``, a JSON-ready description of the data
    and experiment that the checkpoint also records); ``cost["seconds"]`` then counts this
    process's part only.
    """
    k_data, k_fit = jax.random.split(key)
    method = build_method(name, k_data, loss_fn, params, data, resources, settings)
    cost: dict[str, Any] = {}
    start = time.perf_counter()
    select = None if validation is None else (lambda st: validation(method.predictor_of(st)))
    res = training.fit(method.kernel, method.state, k_fit, settings.steps, batches=method.batches,
                       progress=progress, description=name, checkpoint_path=checkpoint_path,
                       validation=select, patience=settings.patience if validation is not None else None,
                       eval_every=settings.eval_every if validation is not None else None,
                       config={"method": name, **{k: v for k, v in settings._asdict().items() if k != "steps"},
                               **({"run": run} if run is not None else {})})
    out = method.predictor_of(res.state)
    jax.block_until_ready(out)
    cost["seconds"] = time.perf_counter() - start
    cost["steps"] = int(len(next(iter(res.history.values()))) if res.history else 0)
    if validation is not None:
        cost["best_step"] = res.best_step
        cost["evaluations"] = [[int(s), float(v)] for s, v in res.evaluations]
    if measure_memory:  # after training, so that the time above includes compilation
        cost["step_bytes"] = step_bytes(method.kernel, method.state, k_fit, method.batches(0))
    return out, cost, res.history

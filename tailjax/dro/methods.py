"""One entry point that trains a predictor with any of the compared methods, with the same
predictor, data, optimiser and number of predictor updates: ML, DML, KL-DRO, W-DRO, DRAGEN,
P-DRO and GAS-DRO. Used by the experiments, the demo and the notebook.
"""

from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple

import jax
import numpy as np
import optax

from tailjax.dro.dragen import dragen_objective
from tailjax.dro.erm import erm_objective
from tailjax.dro.gas_dro import GasDroBatch, GasDroConfig, gas_dro, select_predictor, stacked_batches
from tailjax.dro.kl_dro import kl_dro_init, kl_dro_objective
from tailjax.dro.pdro import gmm_log_density, pdro
from tailjax import training
from tailjax.dro.predictor import minibatches, predictor_kernel
from tailjax.dro.wasserstein import wasserstein_objective

__all__ = ["METHODS", "MethodSettings", "Resources", "build_method", "train_method"]

METHODS = ("ML", "DML", "KL-DRO", "W-DRO", "DRAGEN", "P-DRO", "GAS-DRO")


class MethodSettings(NamedTuple):
    steps: int = 1000  # predictor updates (GAS-DRO: outer iterations of one update each)
    batch_size: int = 64
    learning_rate: float = 1e-3
    kl_radius: float = 0.1
    wdro_penalty: float = 10.0
    wdro_steps: int = 10
    wdro_step_size: float = 0.02
    dragen_penalty: float = 1.0
    dragen_steps: int = 10
    dragen_step_size: float = 0.1
    pdro_tau: float = 0.1
    pdro_learning_rate: float = 1e-2
    gas: GasDroConfig = GasDroConfig()
    gas_learning_rate: float = 1e-5  # generator Adam (the paper's 1e-5)
    gas_data_batch: int = 256  # nominal batch for each J estimate
    gas_select: str = "last"


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


def _need(value, what, method):
    if value is None:
        raise ValueError(f"method {method!r} needs resources.{what}")
    return value


def _memory_bytes(step, state, key, batch) -> int | None:
    """Bytes XLA plans for one compiled training step (arguments + outputs + temporaries)."""
    try:
        m = jax.jit(step).lower(state, key, batch).compile().memory_analysis()
        return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
                   - m.alias_size_in_bytes)
    except Exception:  # memory analysis is not available on every backend
        return None


def build_method(
    name: str,
    loss_fn: Callable[[Any, Any], jax.Array],
    params: Any,
    data: Any,
    resources: Resources = Resources(),
    settings: MethodSettings = MethodSettings(),
) -> tuple[Callable, Any, Callable[[int], Any], Callable[[Any], Any]]:
    """``(step, state, batch_fn, predictor_of)`` of method ``name`` for :func:`training.fit`."""
    if name not in METHODS:
        raise ValueError(f"name must be one of {METHODS}, got {name!r}")
    s = settings
    opt = optax.adam(s.learning_rate)
    batches = lambda d: minibatches(d, s.batch_size)
    if name in ("ML", "DML"):
        train = data if name == "ML" else _need(resources.dml_data, "dml_data", name)
        init, step = predictor_kernel(erm_objective(loss_fn), opt)
        return step, init(params), batches(train), lambda st: st.params
    if name == "KL-DRO":
        init, step = predictor_kernel(kl_dro_objective(loss_fn, s.kl_radius), opt)
        return step, init(kl_dro_init(params)), batches(data), lambda st: st.params[0]
    if name == "W-DRO":
        obj = wasserstein_objective(loss_fn, s.wdro_penalty, s.wdro_steps, s.wdro_step_size,
                                    resources.wdro_where, resources.wdro_replace)
        init, step = predictor_kernel(obj, opt)
        return step, init(params), batches(data), lambda st: st.params
    if name == "DRAGEN":
        obj = dragen_objective(loss_fn, _need(resources.encode, "encode", name),
                               _need(resources.decode, "decode", name), s.dragen_penalty,
                               s.dragen_steps, s.dragen_step_size)
        init, step = predictor_kernel(obj, opt)
        return step, init(params), batches(data), lambda st: st.params
    if name == "P-DRO":
        init, step = pdro(loss_fn, gmm_log_density, opt, optax.adam(s.pdro_learning_rate), s.pdro_tau,
                          _need(resources.pdro_features, "pdro_features", name))
        state = init(params, _need(resources.pdro_nominal, "pdro_nominal", name))
        return step, state, batches(data), lambda st: st.params
    aset = _need(resources.ambiguity_set, "ambiguity_set", name)
    init, step = gas_dro(aset, loss_fn, opt, optax.adam(s.gas_learning_rate), s.gas)
    state = init(params, _need(resources.generator_params, "generator_params", name))
    nominal = _need(resources.generator_data, "generator_data", name)
    batch_fn = stacked_batches(nominal, s.gas_data_batch, s.gas.inner_steps)
    if s.gas.nominal_weight > 0:  # the outer loss also sees a batch of nominal samples
        generator_batches, nominal_batches = batch_fn, batches(data)
        batch_fn = lambda i: GasDroBatch(generator_batches(i), nominal_batches(i))
    return step, state, batch_fn, lambda st: select_predictor(st, s.gas_select)


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
) -> tuple[Any, dict[str, Any], dict[str, np.ndarray]]:
    """Train ``params`` with method ``name`` for ``settings.steps`` predictor updates.

    Returns (predictor, cost, history); ``cost["seconds"]`` is the wall time of the whole
    loop (compilation included, pre-training of the nominal generators excluded) and, with
    ``measure_memory``, ``cost["step_bytes"]`` the memory XLA plans for one step.
    """
    step, state, batch_fn, predictor_of = build_method(name, loss_fn, params, data, resources, settings)
    cost: dict[str, Any] = {}
    start = time.perf_counter()
    res = training.fit(step, state, key, settings.steps, batch_fn=batch_fn, progress=progress,
                       description=name, checkpoint_path=checkpoint_path)
    out = predictor_of(res.state)
    jax.block_until_ready(out)
    cost["seconds"] = time.perf_counter() - start
    if measure_memory:  # after training, so that the time above includes compilation
        cost["step_bytes"] = _memory_bytes(step, state, key, batch_fn(0))
    return out, cost, res.history

"""The one training path: gradient kernel, minibatches, fit, and checkpoints that know their run."""

import os
import pathlib
import pickle
import signal
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tailjax import checkpoint
from tailjax.base import Kernel
from tailjax.training import FitResult, TrainState, fit, gradient_kernel, minibatches

ROOT = pathlib.Path(__file__).resolve().parents[1]

# The run used by the kill/resume tests, also executed in a subprocess (see _RUN_SCRIPT).
_RUN_SOURCE = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, optax
    from tailjax.training import fit, gradient_kernel, minibatches

    def loss(params, batch, key):
        x, y = batch
        noise = 0.01 * jax.random.normal(key, y.shape, y.dtype)
        err = x @ params["w"] + params["b"] - y - noise
        return jnp.mean(err**2), {"max_abs": jnp.max(jnp.abs(err))}

    def data():
        x = jax.random.normal(jax.random.PRNGKey(0), (96, 3))
        return x, x @ jnp.array([1.0, -2.0, 0.5]) + 0.3

    def run(path, num_steps=60, kill_at=None, config=None, key=None, width=3):
        import os, signal
        x, y = data()
        kernel = gradient_kernel(loss, optax.adam(0.05))
        batch_fn = minibatches(jax.random.PRNGKey(1), (x, y), 16)
        def batches(i):
            if kill_at is not None and i == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return batch_fn(i)
        params = {"w": jnp.zeros(width), "b": jnp.zeros(())}
        return fit(kernel, kernel.init(params), jax.random.PRNGKey(2) if key is None else key,
                   num_steps, batches=batches, checkpoint_path=path, checkpoint_every=10,
                   config={"lr": 0.05} if config is None else config, progress=False)
    """
)
_namespace: dict = {}
exec(compile(_RUN_SOURCE, "<training-run>", "exec"), _namespace)
_run = _namespace["run"]
_loss = _namespace["loss"]


def _leaves_equal(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb)
    for u, v in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def test_gradient_kernel_is_one_optax_step():
    params = {"w": jnp.array([0.5, -1.0, 2.0]), "b": jnp.array(0.1)}
    x = jax.random.normal(jax.random.PRNGKey(3), (8, 3))
    batch = (x, jnp.ones(8))
    key = jax.random.PRNGKey(4)
    opt = optax.adam(0.1)
    kernel = gradient_kernel(_loss, opt)
    assert isinstance(kernel, Kernel)
    state = kernel.init(params)
    assert isinstance(state, TrainState) and int(state.step) == 0
    new, info = jax.jit(kernel.step)(state, key, batch)
    (value, aux), grads = jax.value_and_grad(_loss, has_aux=True)(params, batch, key)
    with jax.numpy_dtype_promotion("standard"):  # optax's count meets float hyper-parameters
        updates, _ = opt.update(grads, opt.init(params), params)
        expected = optax.apply_updates(params, updates)
    for a, b in zip(jax.tree_util.tree_leaves(new.params), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-6)  # jit against eager rounding
    assert int(new.step) == 1
    np.testing.assert_allclose(info.loss, value, rtol=1e-6)
    np.testing.assert_allclose(info.grad_norm, optax.global_norm(grads), rtol=1e-6)
    np.testing.assert_allclose(info.aux["max_abs"], aux["max_abs"], rtol=1e-6)


def test_minibatches_visit_every_row_once_per_epoch_and_repeat():
    rows = jnp.arange(20)
    batch_fn = minibatches(jax.random.PRNGKey(0), {"i": rows, "sq": rows**2}, 5)
    epoch0 = np.concatenate([np.asarray(batch_fn(i)["i"]) for i in range(4)])
    epoch1 = np.concatenate([np.asarray(batch_fn(i)["i"]) for i in range(4, 8)])
    assert sorted(epoch0) == list(range(20)) and sorted(epoch1) == list(range(20))
    assert not np.array_equal(epoch0, epoch1)
    np.testing.assert_array_equal(batch_fn(6)["i"], batch_fn(6)["i"])
    np.testing.assert_array_equal(batch_fn(6)["sq"], np.asarray(batch_fn(6)["i"]) ** 2)
    stacked = minibatches(jax.random.PRNGKey(0), rows, 5, stack=3)(1)
    assert stacked.shape == (3, 5)
    np.testing.assert_array_equal(stacked[0], batch_fn(3)["i"])


def test_minibatches_trace_inside_scan_as_on_the_host():
    data = (jnp.arange(30.0), jnp.arange(30) * 2)
    batch_fn = minibatches(jax.random.PRNGKey(3), data, 7, stack=2)
    _, traced = jax.lax.scan(lambda c, i: (c, batch_fn(i)), None, jnp.arange(5))
    for i in range(5):
        for a, b in zip(jax.tree_util.tree_leaves(batch_fn(i)), jax.tree_util.tree_leaves(traced)):
            np.testing.assert_array_equal(a, b[i])


def test_minibatches_bad_input():
    with pytest.raises(ValueError, match="batch_size"):
        minibatches(jax.random.PRNGKey(0), jnp.zeros(4), 0)
    with pytest.raises(ValueError, match="leading axis"):
        minibatches(jax.random.PRNGKey(0), (jnp.zeros(4), jnp.zeros(5)), 2)
    with pytest.raises(ValueError, match="empty"):
        minibatches(jax.random.PRNGKey(0), jnp.zeros((0, 2)), 2)
    with pytest.raises(ValueError, match="stack"):
        minibatches(jax.random.PRNGKey(0), jnp.zeros(4), 2, stack=0)


def test_sigkill_mid_run_then_resume_is_bitwise_equal(tmp_path):
    reference = _run(None)
    path = tmp_path / "run.ckpt"
    script = _RUN_SOURCE + f"\nrun({str(path)!r}, kill_at=35)\n"
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"}, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert checkpoint.read_header(path)["step"] == 30
    resumed = _run(path)
    _leaves_equal(resumed.state, reference.state)
    for name in reference.history:
        np.testing.assert_array_equal(resumed.history[name], reference.history[name])
    assert checkpoint.read_header(path)["step"] == 60


def test_resume_refuses_another_config_key_or_shape(tmp_path):
    path = tmp_path / "run.ckpt"
    _run(path, num_steps=20)
    with pytest.raises(ValueError, match=r"run.ckpt.*config\.lr \(checkpoint 0\.05, now 0\.01\)"):
        _run(path, num_steps=40, config={"lr": 0.01})
    with pytest.raises(ValueError, match=r"run.ckpt.*PRNG key"):
        _run(path, num_steps=40, key=jax.random.PRNGKey(99))
    with pytest.raises(ValueError, match=r"run.ckpt.*params\['w'\]: checkpoint shape \(3,\).*\(4,\)"):
        _run(path, num_steps=40, width=4)
    with pytest.raises(ValueError, match=r"run.ckpt.*step 20, beyond num_steps=10"):
        _run(path, num_steps=10)
    again = _run(path, num_steps=20)  # the same run: nothing left to do, state unchanged
    assert int(again.state.step) == 20


def test_truncated_or_foreign_checkpoint_names_the_path_and_runs_no_code(tmp_path):
    path = tmp_path / "run.ckpt"
    _run(path, num_steps=10)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(checkpoint.CheckpointError, match=r"run\.ckpt is truncated, corrupt"):
        _run(path, num_steps=20)

    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))

    foreign = tmp_path / "foreign.ckpt"
    foreign.write_bytes(pickle.dumps({"state": Exploit(), "step": 1}))
    with pytest.raises(checkpoint.CheckpointError, match="foreign.ckpt"):
        _run(foreign, num_steps=20)
    assert not marker.exists()


def test_typed_keys_in_state_and_as_run_key(tmp_path):
    class State(tuple):
        pass

    def step(state, key, batch):
        count, k = state
        k, sub = jax.random.split(k)
        return (count + jax.random.uniform(sub), k), {"count": count}

    init = (jnp.zeros(()), jax.random.key(5))
    path = tmp_path / "keys.ckpt"
    full = fit(step, init, jax.random.key(6), 12, progress=False)
    fit(step, init, jax.random.key(6), 7, checkpoint_path=path, progress=False)
    resumed = fit(step, init, jax.random.key(6), 12, checkpoint_path=path, progress=False)
    assert jax.dtypes.issubdtype(resumed.state[1].dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(resumed.state[0], full.state[0])
    np.testing.assert_array_equal(jax.random.key_data(resumed.state[1]), jax.random.key_data(full.state[1]))


def test_validation_selects_best_params_and_patience_stops():
    x, y = _namespace["data"]()
    kernel = gradient_kernel(_loss, optax.sgd(0.05))
    params = {"w": jnp.zeros(3), "b": jnp.zeros(())}
    # the score is the distance to a fixed point that training passes through and leaves
    target = {"w": jnp.array([0.3, -0.6, 0.15]), "b": jnp.array(0.09)}
    score = lambda s: float(sum(jnp.sum((a - b) ** 2) for a, b in  # noqa: E731
                                zip(jax.tree_util.tree_leaves(s.params), jax.tree_util.tree_leaves(target))))
    result = fit(kernel, kernel.init(params), jax.random.PRNGKey(2), 200,
                 batches=(x, y), validation=score, eval_every=5, progress=False)
    scores = dict(result.evaluations)
    assert result.evaluations[0][0] == 0
    assert result.best_step == min(scores, key=scores.get)
    assert 0 < result.best_step < 200
    assert score(result.state) == pytest.approx(scores[result.best_step])
    assert int(result.state.step) == 200  # the optimiser state is the last one
    stopped = fit(kernel, kernel.init(params), jax.random.PRNGKey(2), 200,
                  batches=(x, y), validation=score, eval_every=5, patience=3, progress=False)
    assert stopped.best_step == result.best_step
    assert stopped.evaluations[-1][0] == result.best_step + 15
    assert len(stopped.history["loss"]) == result.best_step + 15


def test_selection_survives_a_resume(tmp_path):
    x, y = _namespace["data"]()
    kernel = gradient_kernel(_loss, optax.sgd(0.05))
    params = {"w": jnp.zeros(3), "b": jnp.zeros(())}
    score = lambda s: float(jnp.abs(s.params["b"] - 0.1))  # noqa: E731
    kwargs = dict(batches=(x, y), validation=score, eval_every=4, progress=False)
    full = fit(kernel, kernel.init(params), jax.random.PRNGKey(2), 80, **kwargs)
    path = tmp_path / "sel.ckpt"
    fit(kernel, kernel.init(params), jax.random.PRNGKey(2), 40, checkpoint_path=path, **kwargs)
    resumed = fit(kernel, kernel.init(params), jax.random.PRNGKey(2), 80, checkpoint_path=path, **kwargs)
    assert resumed.best_step == full.best_step
    _leaves_equal(resumed.state.params, full.state.params)
    assert [s for s, _ in resumed.evaluations] == [s for s, _ in full.evaluations]


def test_eval_fn_and_fixed_batches():
    x, y = _namespace["data"]()
    kernel = gradient_kernel(_loss, optax.adam(0.05))
    result = fit(kernel, kernel.init({"w": jnp.zeros(3), "b": jnp.zeros(())}), jax.random.PRNGKey(0),
                 10, batches=(x, y), eval_fn=lambda s: {"b": s.params["b"]}, eval_every=4,
                 progress=False)
    assert isinstance(result, FitResult)
    assert [s for s, _ in result.evaluations] == [4, 8, 10]
    assert set(result.history) == {"loss", "grad_norm", "aux.max_abs"}
    assert result.history["loss"].shape == (10,)


def test_fit_bad_input():
    kernel = gradient_kernel(_loss, optax.adam(0.05))
    state = kernel.init({"w": jnp.zeros(3), "b": jnp.zeros(())})
    with pytest.raises(ValueError, match="num_steps"):
        fit(kernel, state, jax.random.PRNGKey(0), -1, progress=False)
    with pytest.raises(ValueError, match="patience"):
        fit(kernel, state, jax.random.PRNGKey(0), 5, patience=2, progress=False)
    with pytest.raises(ValueError, match="eval_every"):
        fit(kernel, state, jax.random.PRNGKey(0), 5, eval_fn=lambda s: 0.0, eval_every=0, progress=False)


def test_fit_and_minibatches_refuse_fractional_counts_and_take_numpy_ints():
    kernel = gradient_kernel(_loss, optax.adam(0.05))
    state = kernel.init({"w": jnp.zeros(3), "b": jnp.zeros(())})
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="num_steps"):  # was int(2.5) = 2 steps
        fit(kernel, state, key, 2.5, progress=False)
    with pytest.raises(ValueError, match="checkpoint_every"):
        fit(kernel, state, key, 2, checkpoint_every=1.5, progress=False)
    with pytest.raises(ValueError, match="eval_every"):
        fit(kernel, state, key, 2, eval_fn=lambda s: 0.0, eval_every=1.5, progress=False)
    with pytest.raises(ValueError, match="patience"):
        fit(kernel, state, key, 2, validation=lambda s: 0.0, patience=1.5, progress=False)
    with pytest.raises(ValueError, match="batch_size"):  # was batches of 2
        minibatches(key, jnp.zeros(4), 2.5)
    with pytest.raises(ValueError, match="stack"):
        minibatches(key, jnp.zeros(4), 2, stack=1.5)
    x, y = _namespace["data"]()
    batches = minibatches(jax.random.PRNGKey(1), (x, y), np.int64(16), stack=np.int32(1))
    done = fit(kernel, state, key, np.int64(3), batches=lambda i: jax.tree_util.tree_map(lambda a: a[0], batches(i)),
               progress=False)
    assert done.history["loss"].shape == (3,)


def test_validation_selects_a_whole_state_without_params_field():
    def step(state, key, batch):
        return (state[0] + 1.0,), {}

    result = fit(step, (jnp.zeros(()),), jax.random.PRNGKey(0), 10,
                 validation=lambda s: float((s[0] - 4.0) ** 2), eval_every=1, progress=False)
    assert result.best_step == 4 and float(result.state[0]) == 4.0

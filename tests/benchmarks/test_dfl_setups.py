"""The benchmarks' baseline registry: every method has a loss and its options, and a named
baseline trains and decides through the library's public API."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.setups.dfl import BASELINES, METHODS, POOL_METHODS, decide_baseline, loss_options, train_baseline
from tailjax.dfl import make_instance


def test_every_method_has_a_loss_and_its_options():
    assert set(METHODS) == set(BASELINES) and set(POOL_METHODS) <= set(METHODS)
    for m in POOL_METHODS:
        assert loss_options(m, pool_size=7)["pool_size"] == 7
    assert loss_options("dfl+", tail_prob=0.2, num_samples=4, sigma=0.3) == dict(sigma=0.3, tail_prob=0.2,
                                                                                num_samples=4)
    assert loss_options("mse") == {} and loss_options("listwise", temperature=2.0)["temperature"] == 2.0
    with pytest.raises(ValueError, match="method"):
        loss_options("blackbox")


@pytest.fixture(scope="module")
def sp():
    inst = make_instance("shortest_path", num_data=40, num_features=3, deg=2, seed=0)
    return inst, inst.features, inst.costs


def test_named_baseline_trains_and_decides(sp):
    inst, x, c = sp
    point = train_baseline("nce", jax.random.key(0), inst, x, c, epochs=1, batch_size=16, solve_ratio=0.5)
    assert point.sigma is None and point.result.history["loss"].shape == (2,)
    assert point.result.state.cache.shape == (80, 40)  # the pool method's cache grows with solve_ratio
    np.testing.assert_allclose(jnp.sum(decide_baseline(point, x[:3], inst), axis=1), 8.0)
    with pytest.raises(ValueError, match="epochs"):
        train_baseline("mse", jax.random.key(0), inst, x, c, epochs=0)


@pytest.mark.slow
def test_dfl_plus_baseline_samples_its_decisions(sp):
    inst, x, c = sp
    trained = train_baseline("dfl+", jax.random.key(0), inst, x, c, epochs=1, batch_size=16, num_samples=4,
                             tail_prob=0.5)
    assert trained.sigma == pytest.approx(0.5 * float(np.mean(np.std(c, axis=0))), rel=1e-5)
    w = decide_baseline(trained, x[:3], inst, tail_prob=0.5, key=jax.random.key(1), num_samples=8)
    assert w.shape == (3, 40) and bool(jnp.all(jnp.isfinite(w)))

"""ICON energy loader (real data; skipped when ../shared/data is absent)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tailjax.dfl.problems import icon_instance, load_icon_energy


def test_icon_preprocessing(data_dir):
    data = load_icon_energy(data_dir / "icon_energy")
    assert data.features.shape == (789, 48, 8) and data.prices.shape == (789, 48)
    assert data.num_train == 552
    assert np.all(data.prices >= 0) and np.all(np.isfinite(data.features))


def test_icon_instance_residual_bootstrap(data_dir):
    inst, n_tr = icon_instance(data_dir / "icon_energy")
    assert inst.features.shape == (789, 384) and n_tr == 552
    x = jnp.asarray(inst.features[n_tr])
    s = inst.model.sample(jax.random.key(0), x, 5000)
    np.testing.assert_allclose(jnp.mean(s, 0), inst.model.mean(x), rtol=0.1, atol=2.0)
    w = inst.oracle(jnp.asarray(inst.costs[0]))
    np.testing.assert_allclose(float(jnp.sum(w)), 12.0, rtol=1e-5)


def test_icon_bad_path(tmp_path):
    with pytest.raises(ValueError, match="path"):
        load_icon_energy(tmp_path)

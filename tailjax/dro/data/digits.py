"""USPS digits (16 x 16, Hull 1994) and scikit-learn's 8 x 8 digits resized to 16 x 16.

Both come as float32 images in [0, 1] with ink near 1, and int32 labels 0-9. Nothing is
downloaded: USPS is read from ``<path>/usps/usps.npz`` (``path`` defaults to the
``TAILJAX_DATA`` environment variable), scikit-learn's digits ship with scikit-learn.
"""

from __future__ import annotations

import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["resolve_data_dir", "load_usps", "load_sklearn_digits"]


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
    (2007, 16, 16), ``y_test`` (2007,)."""
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

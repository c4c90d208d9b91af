"""Hourly grid carbon intensity (Electricity Maps exports) for GAS-DRO's forecasting task.

Files ``<path>/carbon_intensity/<ZONE>_<YEAR>_hourly.csv`` (``path`` defaults to the
``TAILJAX_DATA`` environment variable); column 4 is the direct carbon intensity, column 5
the life-cycle one. With neither a path nor $TAILJAX_DATA, the loaders read the subset bundled
in ``tailjax/data`` (direct intensity of ERCOT and CAISO, 2021-2023) and the tasks use the
zone-years it holds. The task: train on one zone's years, test on every other zone-year;
samples are sliding windows of ``window + 1`` hours (predict the last from the first
``window``). Scaling (``scaling=``): ``"train"`` min-max scales every series by the range of
the training zone-years (the training set lies in [0, 1]; other zones fall partly outside it,
so test errors include the level shift between zones); ``"own"`` scales each zone-year by its
own range (every set lies in [0, 1]: test errors measure the shift in shape only).
``validation=f`` holds out the last fraction f of each training year (chronologically; no
validation window shares an hour with a training window): a training-domain validation split
for choosing hyperparameters without looking at the test zones.
"""

from __future__ import annotations

import csv
import functools
import os
from typing import NamedTuple, Sequence

import numpy as np

from tailjax._checks import check_int
from tailjax.dro.data.digits import bundled_data, resolve_data_dir

__all__ = [
    "ZONES",
    "YEARS",
    "available_zone_years",
    "load_carbon_intensity",
    "sliding_windows",
    "minmax_scale",
    "wasserstein_1d",
    "CarbonTask",
    "carbon_task",
]

ZONES = {"ERCOT": "US-TEX-ERCO", "GB": "GB", "CAISO": "US-CAL-CISO", "NSW": "AU-NSW"}
YEARS = (2021, 2022, 2023, 2024)
_COLUMNS = {"direct": 4, "lca": 5}


def load_carbon_intensity(
    zone: str, year: int, path: str | os.PathLike | None = None, column: str = "direct"
) -> np.ndarray:
    """Hourly carbon intensity (gCO2eq/kWh) of one zone-year, float32 of shape (hours,).

    ``zone`` is a short name of :data:`ZONES` or an Electricity Maps zone id. With
    ``path=None`` and $TAILJAX_DATA unset, the bundled subset is read (direct column only).
    """
    if column not in _COLUMNS:
        raise ValueError(f"column must be one of {sorted(_COLUMNS)}, got {column!r}")
    zone_id = ZONES.get(zone, zone)
    bundled = bundled_data("carbon_intensity_subset.npz") if path is None else None
    if bundled is not None:
        if column != "direct":
            raise ValueError(f"the bundled subset holds column 'direct' only, got {column!r}: set TAILJAX_DATA")
        series = _read_bundled(str(bundled))
        name = f"{zone_id}_{int(year)}"
        if name not in series:
            raise FileNotFoundError(f"{name} is not in the bundled subset {bundled.name} (it has "
                                    f"{sorted(series)}); set TAILJAX_DATA to the full data folder")
        return series[name].copy()
    folder = resolve_data_dir(path, "carbon_intensity")
    file = folder / f"{zone_id}_{int(year)}_hourly.csv"
    if not file.is_file():
        have = sorted(p.name for p in folder.glob("*_hourly.csv"))
        raise FileNotFoundError(f"{file.name} not in {folder} (zone={zone!r}, year={year}); have {have}")
    return _read_column(str(file), _COLUMNS[column], column).copy()


@functools.lru_cache(maxsize=64)
def _read_column(file: str, col: int, column: str) -> np.ndarray:
    """Parse one CSV column once per process (tasks reload the same zone-years often)."""
    with open(file, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))[1:]
    values = np.asarray([float(r[col]) for r in rows if len(r) > col and r[col] != ""], np.float32)
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError(f"{file} has no usable values in column {column!r}")
    return values


@functools.lru_cache(maxsize=2)
def _read_bundled(file: str) -> dict[str, np.ndarray]:
    with np.load(file) as z:
        return {k: z[k].astype(np.float32) for k in z.files}


def available_zone_years(path: str | os.PathLike | None = None) -> list[tuple[str, int]]:
    """(zone short name or id, year) pairs the data source holds: the files under
    ``<path>/carbon_intensity`` or, with neither path nor $TAILJAX_DATA, the bundled subset."""
    ids = {v: k for k, v in ZONES.items()}
    bundled = bundled_data("carbon_intensity_subset.npz") if path is None else None
    if bundled is not None:
        names = list(_read_bundled(str(bundled)))
    else:
        names = [f.name[: -len("_hourly.csv")] for f in resolve_data_dir(path, "carbon_intensity").glob("*_hourly.csv")]
    pairs = []
    for name in names:
        zone_id, _, year = name.rpartition("_")
        pairs.append((ids.get(zone_id, zone_id), int(year)))
    return sorted(pairs)


def sliding_windows(series: np.ndarray, window: int, stride: int = 1) -> np.ndarray:
    """All windows of ``window + 1`` consecutive values: (N, window + 1)."""
    window = check_int(window, "window", minimum=1)
    stride = check_int(stride, "stride", minimum=1)
    series = np.asarray(series)
    if series.ndim != 1:
        raise ValueError(f"series must be one-dimensional, got shape {series.shape}")
    if not np.all(np.isfinite(series)):
        raise ValueError("series holds NaN or infinite values")
    n = (series.shape[0] - window - 1) // stride + 1
    if n < 1:
        raise ValueError(f"series of length {series.shape[0]} is shorter than window + 1")
    idx = np.arange(n)[:, None] * stride + np.arange(window + 1)[None, :]
    return series[idx]


def minmax_scale(series: np.ndarray) -> np.ndarray:
    """(series - min) / (max - min), float32 (a constant series maps to 0)."""
    lo, hi = float(np.min(series)), float(np.max(series))
    return ((series - lo) / max(hi - lo, 1e-12)).astype(np.float32)


def wasserstein_1d(a: np.ndarray, b: np.ndarray) -> float:
    """W1 distance between the empirical distributions of the values of ``a`` and ``b``."""
    a, b = np.sort(np.ravel(a)), np.sort(np.ravel(b))
    if a.size == 0 or b.size == 0:
        raise ValueError(f"a and b must be non-empty, got sizes {a.size}, {b.size}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("a and b must be finite (NaN or infinite values given)")
    grid = np.sort(np.concatenate([a, b]))
    fa = np.searchsorted(a, grid[:-1], side="right") / a.size
    fb = np.searchsorted(b, grid[:-1], side="right") / b.size
    return float(np.sum(np.abs(fa - fb) * np.diff(grid)))


class CarbonTask(NamedTuple):
    train: np.ndarray  # (N, window + 1) scaled training windows
    tests: dict[str, np.ndarray]  # "ZONE-YEAR" -> (N_k, window + 1)
    wasserstein: dict[str, float]  # "ZONE-YEAR" -> W1 of scaled values to the training set
    validation: np.ndarray | None = None  # (N_v, window + 1) held-out training-zone windows
    ood_validation: dict[str, np.ndarray] | None = None  # held-out zone-years, not among the tests


def _matches(name: str, selectors: Sequence[str]) -> bool:
    zone = name.rpartition("-")[0]
    return any(sel in (name, zone) for sel in selectors)


def carbon_task(
    train_zone: str = "ERCOT",
    train_years: Sequence[int] = (2021, 2022),
    test_zones: Sequence[str] = tuple(ZONES),
    window: int = 24,
    path: str | os.PathLike | None = None,
    stride: int = 1,
    test_stride: int = 1,
    column: str = "direct",
    scaling: str = "train",
    validation: float = 0.0,
    ood_validation: Sequence[str] = (),
) -> CarbonTask:
    """Training windows from ``train_zone``'s ``train_years``; test sets for every other
    zone-year among ``test_zones`` x 2021-2024 that the data source holds. ``scaling`` is
    ``"train"`` (every series by the training range) or ``"own"`` (each zone-year by its own
    range, the training set by the range of its years); ``validation`` is the fraction of
    each training year held out at its end (see the module text); ``ood_validation`` names
    zones or zone-years (``"GB"``, ``"GB-2021"``) held out of the tests as an
    out-of-distribution validation set (for choosing hyperparameters without the test sets).
    ``stride`` and ``test_stride`` thin the windows (GAS-DRO's small-data regime: 40 and 28
    give about 438 training windows from two years and 312 per test year)."""
    if scaling not in ("train", "own"):
        raise ValueError(f"scaling must be 'train' or 'own', got {scaling!r}")
    if not 0.0 <= validation < 0.5:
        raise ValueError(f"validation must lie in [0, 0.5), got {validation}")
    test_stride = check_int(test_stride, "test_stride", minimum=1)
    if len(train_years) == 0:
        raise ValueError("train_years must name at least one year")
    if isinstance(ood_validation, str):
        ood_validation = (ood_validation,)
    train_series = np.concatenate([load_carbon_intensity(train_zone, y, path, column) for y in train_years])
    scaled_train = minmax_scale(train_series)
    pieces, held = [], []
    for y in train_years:  # windows do not straddle the year boundary
        s = minmax_scale_like(load_carbon_intensity(train_zone, y, path, column), train_series)
        cut = s.shape[0] - int(round(validation * s.shape[0]))
        if cut < s.shape[0]:
            held.append(sliding_windows(s[cut:], window, stride))
            s = s[:cut]
        pieces.append(sliding_windows(s, window, stride))
    have = set(available_zone_years(path))
    ids = {v: k for k, v in ZONES.items()}
    tests, dists, ood = {}, {}, {}
    for zone in test_zones:
        short = ids.get(zone, zone)
        for year in YEARS:
            if (zone == train_zone and year in train_years) or (short, year) not in have:
                continue
            raw = load_carbon_intensity(zone, year, path, column)
            s = minmax_scale(raw) if scaling == "own" else minmax_scale_like(raw, train_series)
            name = f"{zone}-{year}"
            dists[name] = wasserstein_1d(s, scaled_train)
            target = ood if _matches(name, ood_validation) else tests
            target[name] = sliding_windows(s, window, test_stride)
    unknown = [sel for sel in ood_validation if not any(_matches(n, (sel,)) for n in ood)]
    if unknown:
        raise ValueError(f"ood_validation names {unknown}, which match no test zone-year")
    if not tests:
        raise ValueError("no test zone-year left: check test_zones, ood_validation and the data source")
    val = np.concatenate(held) if held else None
    return CarbonTask(np.concatenate(pieces), tests, dists, val, ood or None)


def minmax_scale_like(series: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Scale ``series`` by the min-max range of ``reference``."""
    lo, hi = float(np.min(reference)), float(np.max(reference))
    return ((series - lo) / max(hi - lo, 1e-12)).astype(np.float32)

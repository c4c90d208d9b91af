"""ICON energy prices (Irish SEM 2011-2013) for energy-cost aware scheduling.

:func:`load_icon_energy` reads ``prices2013.dat`` from ``path`` (default:
``$TAILJAX_DATA/icon_energy``) and applies the predict-and-optimize papers' preprocessing
(see the data set's README): drop ``ActualWindProduction``, ``SystemLoadEP2``,
``ORKTemperature``, ``ORKWindspeed``; treat ``CO2Intensity == 0`` as missing and
interpolate it linearly; drop every day that still has a missing value; keep the 8
features ``HolidayFlag, DayOfWeek, WeekOfYear, Month, ForecastWindProduction,
SystemLoadEA, SMPEA, CO2Intensity``; the label is ``SMPEP2`` clipped at 0; split the days
chronologically 70/30. A day is one instance: features ``(48, 8)``, prices ``(48,)``.

Real data has one price vector per day, not p(c|x). :func:`icon_instance` therefore
builds an *empirical* conditional for CVaR regret: a ridge regression of the 48 prices on
the day's standardised features, plus a residual vector resampled from the training days
(:class:`ResidualBootstrapModel`). This is an approximation of p(c|x), documented as such.
"""

from __future__ import annotations

import os
import pathlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jaxtyping import Array, ArrayLike, Float

from tailjax.dfl.problems.base import ProblemInstance
from tailjax.dfl.problems.energy import energy_problem
from tailjax.layers import box_budget

__all__ = ["IconEnergyData", "load_icon_energy", "ResidualBootstrapModel", "icon_instance"]

FEATURES = (
    "HolidayFlag", "DayOfWeek", "WeekOfYear", "Month",
    "ForecastWindProduction", "SystemLoadEA", "SMPEA", "CO2Intensity",
)
# numeric columns after the two quoted fields (#DateTime, Holiday)
_COLUMNS = (
    "HolidayFlag", "DayOfWeek", "WeekOfYear", "Day", "Month", "Year", "PeriodOfDay",
    "ForecastWindProduction", "SystemLoadEA", "SMPEA", "ORKTemperature", "ORKWindspeed",
    "CO2Intensity", "ActualWindProduction", "SystemLoadEP2", "SMPEP2",
)
PERIODS = 48


class IconEnergyData(NamedTuple):
    features: np.ndarray  # (days, 48, 8) float32, raw units
    prices: np.ndarray  # (days, 48) float32, SMPEP2 clipped at 0
    num_train: int  # the first num_train days are the training split


def _default_path() -> pathlib.Path:
    root = os.environ.get("TAILJAX_DATA")
    if root is None:
        raise ValueError("path is required when the TAILJAX_DATA environment variable is unset")
    return pathlib.Path(root) / "icon_energy"


def load_icon_energy(path: str | os.PathLike | None = None, train_fraction: float = 0.7) -> IconEnergyData:
    """Read and preprocess ICON ``prices2013.dat`` (``path``: the file or its folder)."""
    path = _default_path() if path is None else pathlib.Path(path)
    if path.is_dir():
        path = path / "prices2013.dat"
    if not path.is_file():
        raise ValueError(f"path: no ICON price file at {path}")
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must lie in (0, 1), got {train_fraction}")
    rows = []
    with open(path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            parts = line.split('"')  # ['', datetime, ' ', holiday, ' numbers...']
            rows.append([float(v) for v in parts[4].split()])
    table = np.asarray(rows, np.float64)
    if table.shape[1] != len(_COLUMNS) or table.shape[0] % PERIODS:
        raise ValueError(f"path: unexpected ICON table shape {table.shape}")
    col = {name: table[:, i] for i, name in enumerate(_COLUMNS)}
    co2 = col["CO2Intensity"].copy()
    co2[co2 == 0] = np.nan
    ok = ~np.isnan(co2)
    idx = np.arange(co2.shape[0])
    co2 = np.interp(idx, idx[ok], co2[ok])
    co2[: np.argmax(ok)] = np.nan  # like pandas: no backward fill before the first value
    col["CO2Intensity"] = co2
    feats = np.stack([col[name] for name in FEATURES], axis=1).reshape(-1, PERIODS, len(FEATURES))
    label = col["SMPEP2"].reshape(-1, PERIODS)
    keep = ~(np.isnan(feats).any(axis=(1, 2)) | np.isnan(label).any(axis=1))
    feats, label = feats[keep], np.maximum(label[keep], 0.0)
    num_train = int(round(train_fraction * feats.shape[0]))
    return IconEnergyData(feats.astype(np.float32), label.astype(np.float32), num_train)


@struct.dataclass
class ResidualBootstrapModel:
    """Empirical p(c|x): ``W x + b`` plus a training residual vector drawn uniformly.

    ``x`` is the flattened, standardised day of features ``(48 * 8,)``.
    """

    W: Array  # (T, q)
    b: Array  # (T,)
    residuals: Array  # (R, T)

    def mean(self, x: Float[ArrayLike, " q"]) -> Float[Array, " T"]:
        x = jnp.asarray(x, self.W.dtype)
        return self.W @ x + self.b + jnp.mean(self.residuals, axis=0)

    def sample(self, key: Array, x: Float[ArrayLike, " q"], num_samples: int) -> Float[Array, "K T"]:
        x = jnp.asarray(x, self.W.dtype)
        idx = jax.random.randint(key, (num_samples,), 0, self.residuals.shape[0])
        return self.W @ x + self.b + self.residuals[idx]


def icon_instance(
    path: str | os.PathLike | None = None,
    *,
    ridge: float = 10.0,
    lower: float = 0.0,
    upper: float = 1.0,
    total: float = 12.0,
    reg: float = 0.0,
) -> tuple[ProblemInstance, int]:
    """ICON scheduling instance: standardised flattened features ``(days, 384)``, prices
    ``(days, 48)``, the residual-bootstrap p(c|x) fitted on the training days, and the greedy
    oracle. Returns ``(instance, num_train)``."""
    data = load_icon_energy(path)
    n_tr = data.num_train
    x = data.features.reshape(data.features.shape[0], -1).astype(np.float64)
    mu, sd = x[:n_tr].mean(0), x[:n_tr].std(0) + 1e-8
    x = (x - mu) / sd
    c = data.prices.astype(np.float64)
    xt, ct = x[:n_tr], c[:n_tr]
    cm = ct.mean(0)
    W = np.linalg.solve(xt.T @ xt + ridge * np.eye(x.shape[1]), xt.T @ (ct - cm)).T
    res = ct - cm - xt @ W.T
    dtype = jnp.result_type(float)
    model = ResidualBootstrapModel(jnp.asarray(W, dtype), jnp.asarray(cm, dtype), jnp.asarray(res, dtype))
    problem = energy_problem(PERIODS, lower=lower, upper=upper, total=total, reg=reg)
    lo, hi = problem.polytope.lower, problem.polytope.upper
    oracle = lambda cost: box_budget(cost, lo, hi, total)  # noqa: E731
    inst = ProblemInstance("icon_energy", problem, model, oracle, x.astype(np.float32), c.astype(np.float32))
    return inst, n_tr

"""Loaders for GAS-DRO's real data: hourly carbon intensity and handwritten digits."""

from tailjax.dro.data.carbon import (
    ZONES,
    CarbonTask,
    carbon_task,
    load_carbon_intensity,
    sliding_windows,
    wasserstein_1d,
)
from tailjax.dro.data.digits import load_sklearn_digits, load_usps, resolve_data_dir

__all__ = [
    "ZONES",
    "CarbonTask",
    "carbon_task",
    "load_carbon_intensity",
    "sliding_windows",
    "wasserstein_1d",
    "load_usps",
    "load_sklearn_digits",
    "resolve_data_dir",
]

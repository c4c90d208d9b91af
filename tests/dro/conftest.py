"""Fixtures of the DRO tests; the repository root on ``sys.path`` for ``benchmarks.setups.dro``."""

import pathlib
import sys

import jax
import pytest

ROOT = str(pathlib.Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


@pytest.fixture
def optax_promotion():
    """Standard dtype promotion for a test body that runs optax updates itself (outside
    :func:`tailjax.training.gradient_kernel`, which does so on its own)."""
    with jax.numpy_dtype_promotion("standard"):
        yield

"""Fixtures of the DRO tests."""

import jax
import pytest


@pytest.fixture
def optax_promotion():
    """optax 0.2.x's Adam bias correction raises a float to an int32 count, which strict dtype
    promotion (tests/conftest.py) rejects: tests that run optimiser steps use standard
    promotion for their body."""
    with jax.numpy_dtype_promotion("standard"):
        yield

import jax
import pytest


@pytest.fixture
def optax_promotion():
    """optax's Adam mixes a Python float and an int32 step count, which the repository's
    strict dtype promotion (tests/conftest.py) rejects: tests that run optimiser steps use
    standard promotion for their body (the library's own code is checked under strict)."""
    with jax.numpy_dtype_promotion("standard"):
        yield

"""Shared fixtures: float32 by default, float64 on request, strict dtype promotion."""

import jax
import pytest

jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture
def x64():
    """Run the test body with 64-bit floats enabled."""
    with jax.enable_x64(True):
        yield


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    """Parametrise a test over float32 and float64 (x64 enabled for the latter)."""
    if request.param == "float64":
        with jax.enable_x64(True):
            yield jax.numpy.float64
    else:
        yield jax.numpy.float32


@pytest.fixture(scope="session")
def data_dir():
    """Folder of the real data sets: $TAILJAX_DATA, else ../shared/data beside the repo."""
    import os
    import pathlib

    env = os.environ.get("TAILJAX_DATA")
    path = pathlib.Path(env) if env else pathlib.Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"data folder not found at {path} (set TAILJAX_DATA)")
    return path.resolve()

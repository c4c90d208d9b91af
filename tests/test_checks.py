"""The shared validation helpers of tailjax._checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tailjax._checks import check_int, check_positive


@pytest.mark.parametrize("value", [3, np.int64(3), np.array(3), jnp.array(3), 3.0, np.float32(3.0)])
def test_check_int_returns_a_python_int_for_integer_values(value):
    out = check_int(value, "count", minimum=1)
    assert out == 3 and type(out) is int


@pytest.mark.parametrize("value", [2.5, float("nan"), float("inf"), np.array([3]), "3", None])
def test_check_int_refuses_non_integers_by_name(value):
    with pytest.raises(ValueError, match="count must be an integer"):
        check_int(value, "count")


def test_check_int_refuses_a_value_below_its_minimum_or_a_tracer():
    with pytest.raises(ValueError, match="count must be >= 1, got 0"):
        check_int(0, "count", minimum=1)
    with pytest.raises(ValueError, match="count must be a concrete integer"):
        jax.jit(lambda n: check_int(n, "count"))(3)


def test_range_checks_accept_a_one_element_array_as_check_scalar_does():
    check_positive(np.array([0.5]), "scale")  # was NumPy's "only 0-dimensional arrays" TypeError
    with pytest.raises(ValueError, match="scale must be > 0"):
        check_positive(jnp.array([-0.5]), "scale")
    with pytest.raises(ValueError, match="scale must be a scalar"):
        check_positive(np.array([0.5, 1.0]), "scale")

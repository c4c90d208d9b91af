"""CVaR is a coherent risk measure: property tests with hypothesis (float64)."""

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tailjax import risk

N = 16
values = arrays(np.float64, N, elements=st.floats(-100, 100, allow_nan=False))
probs = st.sampled_from([0.05, 0.125, 0.3, 0.5, 0.77, 1.0])
common = settings(max_examples=40, deadline=None)


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def cvar(x, p, **kw):
    return float(risk.cvar(np.asarray(x), p, **kw))


def var(x, p, **kw):
    return float(risk.var(np.asarray(x), p, **kw))


@common
@given(values, probs, st.floats(-50, 50))
def test_translation_invariance(x, p, c):
    assert cvar(x + c, p) == pytest.approx(cvar(x, p) + c, abs=1e-9)


@common
@given(values, probs, st.floats(0.01, 20))
def test_positive_homogeneity(x, p, lam):
    assert cvar(lam * x, p) == pytest.approx(lam * cvar(x, p), rel=1e-9, abs=1e-9)


@common
@given(values, values, probs)
def test_monotonicity(x, y, p):
    lo, hi = np.minimum(x, y), np.maximum(x, y)
    assert cvar(lo, p) <= cvar(hi, p) + 1e-9


@common
@given(values, values, probs)
def test_subadditivity_on_joint_samples(x, y, p):
    assert cvar(x + y, p) <= cvar(x, p) + cvar(y, p) + 1e-9


@common
@given(values, probs)
def test_cvar_dominates_var_and_mean(x, p):
    assert cvar(x, p) >= var(x, p) - 1e-9
    assert cvar(x, p) >= np.mean(x) - 1e-9


@common
@given(values)
def test_full_tail_is_mean(x):
    assert cvar(x, 1.0) == pytest.approx(np.mean(x), abs=1e-9)


@common
@given(values, probs)
def test_lower_tail_is_negated_upper_tail(x, p):
    assert cvar(x, p, side="lower") == pytest.approx(-cvar(-x, p), abs=1e-9)
    assert var(x, p, side="lower") == pytest.approx(-var(-x, p), abs=1e-9)


@common
@given(arrays(np.float64, 8, elements=st.floats(-100, 100)),
       arrays(np.int64, 8, elements=st.integers(1, 4)), probs)
def test_weighted_equals_replicated(x, counts, p):
    replicated = np.repeat(x, counts)
    weighted = cvar(x, p, weights=counts.astype(np.float64))
    assert weighted == pytest.approx(cvar(replicated, p), rel=1e-9, abs=1e-9)
    assert var(x, p, weights=counts.astype(np.float64)) == pytest.approx(var(replicated, p))

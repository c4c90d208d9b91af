"""Bad input over the public API: every probed argument of every spec, concrete and traced,
is rejected with a message naming it or gives the documented NaN; never a silent finite
number, never another exception. ``python -m tests.bad_input.report`` prints the table."""

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.bad_input.spec import Case, cases, judge
from tests.bad_input.specs import CORE_SPECS, SPECS

CASES = cases(CORE_SPECS)


def check_case(case: Case):
    verdict, detail = judge(case)
    assert verdict in ("rejected", "nan"), f"{case.id}: {verdict}: {detail}"


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c.slow else c for c in CASES],
                         ids=[c.id for c in CASES])
def test_bad_argument_is_rejected_or_nan(case: Case):
    check_case(case)


LEVELS = [(spec, arg) for spec in SPECS for arg, kind in spec.kinds.items() if "above one" in kind.bad]


@settings(max_examples=25, deadline=None, derandomize=True)
@given(data=st.data())
def test_random_out_of_range_levels(data):
    spec, arg = data.draw(st.sampled_from(LEVELS))
    value = data.draw(st.one_of(st.floats(1.0 + 1e-6, 1e6), st.floats(-1e6, -1e-9)))
    closed_right = "one" not in spec.kinds[arg].bad
    if closed_right is False and value == 1.0:
        return
    kind = type(spec.kinds[arg])(bad={"drawn": value}, traced=True)
    probe = type(spec)(spec.name, spec.call, spec.args, {arg: kind}, jittable=spec.jittable)
    for case in cases([probe]):
        verdict, detail = judge(case)
        assert verdict in ("rejected", "nan"), f"{case.id} ({value!r}): {verdict}: {detail}"


@pytest.mark.slow  # one call of every spec: about 4 minutes of CPU
@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_the_valid_call_of_every_spec_succeeds_and_is_not_all_nan(spec):
    # Otherwise a bad argument could pass as "rejected" or "NaN" because of the valid call.
    out = jax.block_until_ready(spec.call(**spec.args))
    floats = [np.asarray(x) for x in jax.tree_util.tree_leaves(out)]
    floats = [x for x in floats if np.issubdtype(x.dtype, np.floating) and x.size]
    assert not floats or not all(np.all(np.isnan(x)) for x in floats), spec.name

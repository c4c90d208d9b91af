"""The bad-input cases of the decision layers and the first dfl specs (specs.py); see test_bad_input.py."""

import pytest

from tests.bad_input.spec import Case, cases
from tests.bad_input.specs import AREA_SPECS
from tests.bad_input.test_bad_input import check_case

CASES = cases(AREA_SPECS["layers"])


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c.slow else c for c in CASES],
                         ids=[c.id for c in CASES])
def test_bad_argument_is_rejected_or_nan(case: Case):
    check_case(case)

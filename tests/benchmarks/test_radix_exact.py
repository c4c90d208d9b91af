import numpy as np
import pytest

from benchmarks.perf import radix_exact


def test_compare_flags_a_wrong_excess_a_nan_excess_and_a_wrong_nan_count_but_not_equal_infinities():
    want = (np.array([1.0, 2.0]), np.array([np.inf, 3.0]), np.array([0, 0]))
    assert radix_exact.compare(want, want)["bad_rows"] == []
    for got in ((want[0], np.array([np.nan, 3.0]), want[2]), (want[0], np.array([np.inf, 3.1]), want[2])):
        assert radix_exact.compare(got, want)["bad_rows"] != []
    assert radix_exact.compare((want[0], want[1], np.array([0, 1])), want)["bad_rows"] == [1]


@pytest.mark.slow  # 10 s in the Pallas interpreter
def test_interpreted_kernel_passes_its_own_check(tmp_path):
    assert radix_exact.main(["--backend", "interpret", "--shapes", "7x3", "--repeat", "20x64:7:4", "--runs", "2",
                             "--out", str(tmp_path)])

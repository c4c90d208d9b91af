"""The adjoint-matching benchmark's UNet part can report XLA's memory plan without running."""

import pytest

from benchmarks.perf import adjoint_matching as am


@pytest.mark.slow  # 14 s of compiling a UNet on the CPU
def test_unet_compile_only_reports_the_memory_plan_without_running():
    rows = am.unet_rows(am.SIZES["small"], ["plain"], compile_only=True)
    assert [r["variant"] for r in rows] == ["plain"]
    assert rows[0]["XLA memory MiB"] > 0 and "it/s" not in rows[0] and "error" not in rows[0]

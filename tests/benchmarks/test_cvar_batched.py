import json

import pytest

from benchmarks.perf import cvar_batched


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_batched_benchmark_checks_each_column_against_the_float64_reference(tmp_path, dtype):
    rows = cvar_batched.main(["--size", "small", "--shapes", "6x300", "--tail-probs", "0.05", "--repeats", "1",
                              "--methods", "tailjax", "jnp.sort", "--dtype", dtype, "--out", str(tmp_path)])
    assert {r["method"] for r in rows} == {"tailjax.cvar_large", "tailjax.risk.cvar", "jnp.sort"}
    # the reference is the float64 CVaR of the values the columns read; bfloat16 columns return
    # bfloat16, one rounding (eps 2^-7) from it
    tol = 1e-5 if dtype == "float32" else 2.0**-7
    assert all(r["max_rel_err"] < tol for r in rows)
    assert json.loads((tmp_path / "cvar_batched.json").read_text())["dtype"] == dtype

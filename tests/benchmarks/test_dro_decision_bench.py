"""benchmarks/perf/dro_decision.py runs and writes its table (a slow smoke test)."""

import json

import numpy as np
import pytest

from benchmarks.perf import dro_decision


@pytest.mark.slow
def test_dro_decision_bench_writes_finite_decisions(tmp_path, monkeypatch):
    monkeypatch.setattr(dro_decision, "CASES", (("shortest_path", "paper-code"),))
    monkeypatch.setitem(dro_decision.SIZES, "small", dict(instances=4, repeats=1))
    dro_decision.main(["--size", "small", "--out", str(tmp_path)])
    (row,) = json.loads((tmp_path / "dro_decision.json").read_text())["rows"]
    assert row["finite"] == 4 and len(row["objective"]) == 4
    assert np.all(np.isfinite(row["objective"])) and row["decision_seconds"] > 0
    assert "shortest_path" in (tmp_path / "dro_decision.md").read_text()

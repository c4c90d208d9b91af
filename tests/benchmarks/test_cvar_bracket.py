"""The bracket benchmark's variants all bracket the VaR, and each whole call is exact."""

import json

from benchmarks.perf import cvar_bracket


def test_every_bracket_variant_covers_the_var_and_every_whole_call_is_exact(tmp_path):
    cvar_bracket.main(["--shapes", "3x40000", "--tail-probs", "0.01", "--repeats", "1", "--out", str(tmp_path)])
    rows = json.loads((tmp_path / "cvar_bracket.json").read_text())["rows"]
    brackets = {r["stage"]: r for r in rows if r["stage"].startswith("bracket")}
    assert len(brackets) == 5 and all(r["covers_v"] for r in brackets.values())
    # the sorted subsample's bracket is the rank interval itself: no wider than the grid search's
    assert brackets["bracket: sort"]["members_max"] <= brackets["bracket: search, two-level counts"]["members_max"]
    whole = [r for r in rows if r["stage"].startswith("cvar_large")]
    assert len(whole) == 5 and all(r["rel_err"] < 1e-6 for r in whole)

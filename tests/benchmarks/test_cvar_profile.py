"""The kernel profile of cvar_large runs end to end (on the CPU there are no device kernels)."""

import json


def test_cvar_profile_writes_one_row_per_configuration(tmp_path):
    from benchmarks.perf.cvar_profile import main

    main(["--size", "small", "--calls", "2", "--tail-probs", "0.01", "--count-backends", "xla",
          "--block-slots", "0", "16", "--out", str(tmp_path)])
    rows = json.loads((tmp_path / "cvar_profile.json").read_text())["rows"]
    assert [r["label"] for r in rows] == ["floor (jnp.sum)", "cvar_large tail 0.01, counts xla, block_slots None",
                                          "cvar_large tail 0.01, counts xla, block_slots 16"]
    assert all(r["wall_ms"] > 0 and isinstance(r["kernels"], list) for r in rows)
    assert all(r["busy_ms"] == sum(k["us_per_call"] for k in r["kernels"]) / 1e3 for r in rows)


def test_cvar_profile_of_named_configs_checks_each_against_float64(tmp_path):
    from benchmarks.perf.cvar_profile import main

    main(["--size", "small", "--calls", "2", "--rounds", "2", "--tail-probs", "0.01", "--configs", "default:",
          "single:sample_run=1,block_slots=None", "--out", str(tmp_path)])
    rows = json.loads((tmp_path / "cvar_profile.json").read_text())["rows"]
    assert [r["label"] for r in rows] == ["floor (jnp.sum)", "cvar_large tail 0.01, default", "cvar_large tail 0.01, single"]
    assert rows[2]["config"]["sample_run"] == 1 and rows[2]["config"]["block_slots"] is None
    assert all(r["relative_error"] < 1e-6 and r["synced_ms"] > 0 for r in rows[1:])

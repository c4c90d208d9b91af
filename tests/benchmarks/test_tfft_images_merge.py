"""Merging single-seed TFFT image runs: one report over every seed, no mixing of settings, no seed twice."""

import json

import pytest

from benchmarks.seeds.tfft_images import ARMS, merge

COLS = ("E[r]", "R-CVaR_0.8", "L-CVaR_0.2", "class_rate", "diversity", "steps", "seconds")


def _write(path, seed, config, r_tfft):
    arms = {name: {c: 1.0 for c in COLS} for name in ARMS}
    arms["R-TFFT"]["R-CVaR_0.8"] = r_tfft
    path.write_text(json.dumps({"size": "small", "config": config, "runs": [{"seed": seed, "arms": arms}]}))
    return path


def test_merge_pools_the_runs_and_counts_wins_per_seed(tmp_path):
    cfg = {"data": "sklearn", "temperature": 10.0, "budget_s": 20.0}
    files = [_write(tmp_path / f"s{s}.json", s, cfg, r) for s, r in enumerate([2.0, 0.5, 3.0])]
    merged = merge(files, tmp_path / "out")
    assert [run["seed"] for run in merged["runs"]] == [0, 1, 2]
    report = (tmp_path / "out" / "tfft_images.md").read_text()
    assert "R-TFFT vs EXP-FT on R-CVaR_0.8: mean difference +0.833, wins 2/3" in report


def test_merge_refuses_runs_of_different_settings(tmp_path):
    a = _write(tmp_path / "a.json", 0, {"temperature": 10.0}, 1.0)
    b = _write(tmp_path / "b.json", 1, {"temperature": 1.0}, 1.0)
    with pytest.raises(ValueError, match="different settings"):
        merge([a, b], tmp_path / "out")


def test_merge_refuses_a_seed_passed_twice(tmp_path):
    a = _write(tmp_path / "a.json", 0, {"temperature": 10.0}, 1.0)
    with pytest.raises(ValueError, match="more than once"):
        merge([a, a], tmp_path / "out")

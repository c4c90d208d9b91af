"""The Gen-DFL figure sweeps record what they vary: decision-time K alone, beta across alpha."""

import json

import pytest

from benchmarks.seeds.gen_dfl import main

TINY = ["steps=2", "proxy_steps=2", "n_train=24", "n_test=4", "dim=3", "Kq=4", "eval_samples=64", "Kref=8",
        "eval_every=1"]


@pytest.mark.slow
def test_decision_samples_sweeps_k_eval_at_fixed_training_k(tmp_path):
    main(["--size", "small", "--only", "decision_samples", "--seeds", "1", "--out", str(tmp_path),
          "--set", *TINY, "K=4", "Ks=(2,6)"])
    recs = json.loads((tmp_path / "gen_dfl.json").read_text())["records"]
    assert {r["K_eval"] for r in recs} == {2, 6}
    assert {r["method"] for r in recs} >= {"gen_dfl", "nll_flow", "oracle_saa"}
    assert all("K" not in r for r in recs)  # training K stays the size's


@pytest.mark.slow
def test_regret_weight_sweep_scores_every_evaluation_level(tmp_path):
    main(["--size", "small", "--only", "regret_weight", "--seeds", "1", "--out", str(tmp_path),
          "--set", *TINY, "K=4", "K_eval=4", "regret_weights=(1.0,)", "eval_tail_probs=(0.1,0.5)"])
    recs = json.loads((tmp_path / "gen_dfl.json").read_text())["records"]
    gen = [r for r in recs if r["method"] == "gen_dfl"]
    assert {r["tail_prob_eval"] for r in gen} == {0.1, 0.5}

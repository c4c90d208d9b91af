"""The Gen-DFL figure sweeps record what they vary (decision-time K alone, beta across alpha);
runs resume from their checkpoint."""

import json

import pytest

from benchmarks.seeds import gen_dfl
from benchmarks.seeds.gen_dfl import main
from benchmarks.setups.dfl.sweeps import write_sweep_report

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


@pytest.mark.slow
def test_resume_keeps_finished_configurations_and_runs_the_rest(tmp_path, monkeypatch):
    args = ["--size", "small", "--only", "decision_samples", "--out", str(tmp_path), "--set", *TINY, "K=4",
            "Ks=(2,)"]
    main([*args, "--seeds", "1"])
    first_state = json.loads((tmp_path / "gen_dfl.json").read_text())
    first = first_state["records"]
    calls = []
    real = gen_dfl.evaluate
    monkeypatch.setattr(gen_dfl, "evaluate", lambda *a, **k: calls.append(a[5]) or real(*a, **k))
    main([*args, "--seeds", "2", "--resume"])
    recs = json.loads((tmp_path / "gen_dfl.json").read_text())["records"]
    assert calls == [1]  # seed 0 was not evaluated again
    assert [r for r in recs if r["seed"] == 0] == first
    assert {r["seed"] for r in recs} == {0, 1}
    seconds = json.loads((tmp_path / "gen_dfl.json").read_text())["timings_s"]["decision_samples"]
    assert seconds > first_state["timings_s"]["decision_samples"]  # summed over both processes
    main([*args, "--seeds", "2", "--resume"])  # nothing left to run: the recorded time stays
    assert json.loads((tmp_path / "gen_dfl.json").read_text())["timings_s"]["decision_samples"] >= seconds


def test_resume_refuses_a_checkpoint_of_other_settings(tmp_path):
    path = tmp_path / "gen_dfl.json"
    path.write_text(json.dumps(dict(size="small", protocol="paper-text", config=dict(steps=2, K=4), records=[])))
    with pytest.raises(SystemExit, match="differs in steps"):
        gen_dfl.load_checkpoint(path, dict(size="small", protocol="paper-text", config=dict(steps=3, K=4)))
    with pytest.raises(SystemExit, match="differs in protocol"):
        gen_dfl.load_checkpoint(path, dict(size="small", protocol="paper-code", config=dict(steps=2, K=4)))
    assert gen_dfl.load_checkpoint(path, dict(size="small", protocol="paper-text", config=dict(steps=2, K=4))) \
        == ([], [], {})


def test_resume_may_add_degrees_and_sweep_values_but_not_change_a_setting(tmp_path):
    # cells are keyed by their degree or swept value, so a longer list only runs more cells
    path = tmp_path / "gen_dfl.json"
    path.write_text(json.dumps(dict(size="paper", protocol="paper-code", config=dict(steps=2, degs=[2], Ks=[100]),
                                    records=[{"seed": 0}])))
    run = dict(size="paper", protocol="paper-code", config=dict(steps=2, degs=[2, 4, 8], Ks=[100, 1000]))
    assert gen_dfl.load_checkpoint(path, run)[0] == [{"seed": 0}]
    with pytest.raises(SystemExit, match=r"differs in steps\)"):
        gen_dfl.load_checkpoint(path, dict(run, config=dict(steps=3, degs=[4], Ks=[100])))


def test_sweep_report_rows_per_setting_and_level_with_orderings(tmp_path):
    recs = [dict(experiment="regret_weight", method=m, regret_weight=b, tail_prob_eval=a, metric="m", seed=s,
                 regret=v + s + (0 if m != "gen_dfl" else (-5 if b == 10.0 else 5)))
            for b in (1.0, 10.0) for a in (0.1, 0.5) for s in range(5)
            for m, v in (("gen_dfl", 50.0), ("nll_flow", 50.0), ("equal_weights", 20.0))]
    report = write_sweep_report(recs, tmp_path)
    rows = [line for line in report.splitlines() if line.startswith("| 1") and "|---" not in line]
    assert len(rows) == 4
    gen_beats_nll = {(r.split(" | ")[0].strip("| "), r.split(" | ")[1]): r.split(" | ")[-2] for r in rows}
    assert gen_beats_nll[("10.0", "0.1")] == "5/5 (p=0.062)"
    assert gen_beats_nll[("1.0", "0.5")] == "0/5 (p=0.062)"
    assert all(r.endswith("| 0/5 (p=0.062) |") for r in rows)  # equal weights beats Gen-DFL on every seed
    assert (tmp_path / "figures.md").read_text().strip() == report.strip()

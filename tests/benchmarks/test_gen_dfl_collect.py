"""The log reader that rebuilds Gen-DFL records when only a run's log came back."""

import pytest

from benchmarks.seeds.gen_dfl_collect import records_from_log

LOG = """[sigma]
  sigma=40 seed=0
    gen_dfl: validation regret 1.26 at the warm start, best 1.014 at step 425
     289.2 s  nll_flow=125.4/60.7  gen_dfl=112.9/51.3
  sigma=60 seed=0
[is_gto]
     120.2 s  nll_flow=67.0/32.0
  is_gto K=8 importance=False: 185.73
  is_gto dim=2 seed=3
  is_gto dim=2 K=16 importance=True: 99.5
"""


def test_records_from_log(tmp_path):
    path = tmp_path / "run.log"
    path.write_text(LOG)
    recs = records_from_log(path)
    sweep = [r for r in recs if r["experiment"] == "sigma"]
    assert len(sweep) == 4  # two methods x two forms; the cut sigma=60 adds nothing
    gen = {r["metric"]: r["regret"] for r in sweep if r["method"] == "gen_dfl"}
    assert gen == {"cvar_of_difference": 112.9, "difference_of_cvars": 51.3}
    assert all(r["sigma"] == 40 and r["tail_prob_eval"] == 0.1 for r in sweep)
    is_recs = [r for r in recs if r["experiment"] == "is_gto"]
    assert [(r["method"], r["K"], r["regret"], r.get("dim"), r["seed"]) for r in is_recs] == [
        ("plain", 8, 185.73, None, 0), ("is", 16, 99.5, 2, 3)]


def test_unknown_sweep_is_refused(tmp_path):
    path = tmp_path / "run.log"
    path.write_text("[alpha]\n  alpha_train=0.5 seed=0\n")
    with pytest.raises(ValueError, match="alpha_train"):
        records_from_log(path)

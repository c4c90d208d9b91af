"""The Table 1 report: per-cell mean ± sd, per-seed orderings with a sign test, duplicate refusal."""

import pytest
from scipy import stats

from benchmarks.setups.dfl.report import (best_baseline, mean_sd_cell, ordering, partial_methods, renamed, table1_cells,
                                          table1_report)


def _rec(method, seed, regret, deg=2, metric="cvar_of_difference"):
    return dict(experiment="table1", problem="portfolio", deg=deg, seed=seed, method=method,
                tail_prob_eval=0.1, metric=metric, regret=regret)


def test_ordering_counts_paired_wins_and_drops_ties():
    a = {0: 1.0, 1: 2.0, 2: 3.0, 3: 5.0}
    b = {0: 2.0, 1: 3.0, 2: 3.0, 3: 4.0, 9: 0.0}  # seed 2 ties, seed 9 unpaired
    wins, n, p = ordering(a, b)
    assert (wins, n) == (2, 3)
    assert p == pytest.approx(stats.binomtest(2, 3, 0.5).pvalue)


def test_a_nan_regret_is_neither_paired_nor_the_best_baseline():
    nan = float("nan")
    assert ordering({0: 1.0, 1: 2.0, 2: 1.0}, {0: nan, 1: 1.0, 2: 3.0})[:2] == (1, 2)  # seed 0 unpaired
    for order in (("dfl+_log", "spo+"), ("spo+", "dfl+_log")):  # whichever method comes first
        recs = [_rec(order[0], 0, nan if order[0] == "dfl+_log" else 5.0),
                _rec(order[1], 0, nan if order[1] == "dfl+_log" else 5.0)]
        assert best_baseline(table1_cells(recs), "portfolio", 2) == {0: 5.0}
    assert mean_sd_cell([1.0, nan, 3.0]) == "2.0 ± 1.4 (2, 1 NaN)" and mean_sd_cell([nan]) == "NaN (1)"
    assert mean_sd_cell([4.25]) == "4.2 (1)" and mean_sd_cell([4.25, nan]) == "4.2 (1, 1 NaN)"
    stored = [_rec("dfl+_log", 0, "nan"), _rec("dfl+_log", 1, 2.0), _rec("gen_dfl", 0, 1.0), _rec("gen_dfl", 1, 1.0)]
    assert "| DFL+ (log link) | 2.0 (1, 1 NaN) |" in table1_report(stored)  # as the JSONs keep NaN


def test_report_means_and_orderings():
    recs = [_rec("gen_dfl", s, 1.0 + s) for s in range(3)] + [_rec("spo+", s, 5.0 + s) for s in range(3)]
    recs += [_rec("gen_dfl", 0, 99.0, metric="difference_of_cvars")]  # other metric: ignored
    report = table1_report(recs)
    assert "| Gen-DFL | 2.0 ± 1.0 (3) |" in report
    assert "| SPO+ | 6.0 ± 1.0 (3) |" in report
    assert "| Gen-DFL, paper | 3.71 |" in report
    assert "| seeds Gen-DFL < SPO+ | 3/3 (p=0.25) |" in report
    assert "| seeds Gen-DFL < best baseline | 3/3 (p=0.25) |" in report


def test_best_baseline_leaves_out_a_method_with_fewer_seeds():
    recs = [_rec("spo+", 0, 5.0), _rec("spo+", 1, 1.0), _rec("mse", 0, 4.0), _rec("mse", 1, 2.0),
            _rec("nce", 0, 3.0)]  # nce ran on seed 0 only: left out, and named
    cells = table1_cells(recs)
    assert best_baseline(cells, "portfolio", 2) == {0: 4.0, 1: 1.0}
    assert partial_methods(cells, "portfolio", 2) == [("nce", 1, 2)]
    report = table1_report(recs + [_rec("gen_dfl", s, 2.0) for s in (0, 1)])
    assert "| not in best baseline (fewer seeds) | NCE (1 of 2 seeds) |" in report
    # with no method on every seed, the seeds all ran on
    assert best_baseline(table1_cells([_rec("spo+", 0, 5.0), _rec("mse", 1, 2.0), _rec("mse", 0, 7.0),
                                       _rec("spo+", 2, 1.0)]), "portfolio", 2) == {0: 5.0}


def test_conflicting_duplicate_seed_is_refused():
    assert table1_cells([_rec("oracle_saa", 0, 1.0), _rec("oracle_saa", 0, 1.0)]) == {
        ("portfolio", 2, "oracle_saa"): {0: 1.0}}
    # another process's float32 rounding (5e-5 relative) is the same result; the first is kept
    assert table1_cells([_rec("oracle_saa", 0, 2.5339), _rec("oracle_saa", 0, 2.5338)]) == {
        ("portfolio", 2, "oracle_saa"): {0: 2.5339}}
    with pytest.raises(ValueError, match="seed 0"):
        table1_cells([_rec("gen_dfl", 0, 1.0), _rec("gen_dfl", 0, 1.001)])


def test_records_of_older_files_are_renamed():
    old = dict(experiment="alpha", method="gen_dfl", alpha_eval=0.1, alpha_train=0.5, beta=10.0, regret=1.0)
    assert renamed(old) == dict(experiment="tail_prob", method="gen_dfl", tail_prob_eval=0.1,
                                tail_prob_train=0.5, regret_weight=10.0, regret=1.0)
    assert table1_cells([renamed(dict(_rec("gen_dfl", 0, 2.0), alpha_eval=0.1))]) == {
        ("portfolio", 2, "gen_dfl"): {0: 2.0}}


def test_table1_script_writes_the_report(tmp_path):
    import json

    from benchmarks.seeds.gen_dfl_table1 import main

    path = tmp_path / "gen_dfl.json"
    path.write_text(json.dumps({"records": [_rec("gen_dfl", s, 1.0 + s) for s in range(2)]}))
    report = main([str(path), "--out", str(tmp_path / "out")])
    assert (tmp_path / "out" / "table1.md").read_text().strip() == report.strip()
    assert "| Gen-DFL | 1.5 ± 0.7 (2) |" in report


def test_table1_script_reads_only_the_named_methods_of_a_file(tmp_path):
    import json

    from benchmarks.seeds.gen_dfl_table1 import main

    first, later = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps({"records": [_rec("mean_cost", 0, 30.0), _rec("gen_dfl", 0, 1.0)]}))
    # a later run of the same cell: its reference row differs (another evaluation model)
    later.write_text(json.dumps({"records": [_rec("mean_cost", 0, 31.0), _rec("spo+", 0, 5.0)]}))
    with pytest.raises(ValueError, match="two results"):
        main([str(first), str(later), "--out", str(tmp_path / "both")])
    report = main([str(first), f"{later}::spo+", "--out", str(tmp_path / "out")])
    assert "| SPO+ | 5.0 (1) |" in report and "30.0" in report and "31.0" not in report
    with pytest.raises(ValueError, match="no records of"):
        main([f"{later}::nce", "--out", str(tmp_path / "none")])

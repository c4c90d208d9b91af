"""The importance-sampling benchmark's checkpoint: finished cells are kept and not run again,
and a checkpoint of other settings is refused."""

import json

import pytest

from benchmarks.seeds import importance_sampling as bench


def _row(part, method, n):
    return dict(part=part, returns="gaussian", tail_prob=1e-2, method=method, n=n, n_last=n, stop="target",
                seconds=1.0, reps=10)


def _refuse(*args, **kwargs):
    raise AssertionError("a finished cell was run again")


@pytest.mark.slow  # fast-suite time; the clock's resume test below stays fast
def test_grid_keeps_finished_cells_without_running_them(monkeypatch):
    monkeypatch.setattr(bench.setup, "estimate_search", _refuse)
    monkeypatch.setattr(bench, "part_bc", _refuse)
    cfg = dict(bench.SIZES["tiny"])
    problems = {"gaussian": (bench.portfolio_problem(cfg["dim"], "gaussian", dtype=bench.jnp.float32),) * 2}
    done_rows = [_row(m, "saa", 512) for m in "abc"]
    seen = []
    rows, curves = bench.grid_checks(problems, cfg, bench.jax.random.PRNGKey(0), ["saa"],
                                     done=(done_rows, []), checkpoint=lambda r, c: seen.append(len(r)))
    assert rows == done_rows and curves == [] and seen == []


@pytest.mark.slow
def test_clock_keeps_finished_rows_without_running_them(monkeypatch):
    monkeypatch.setattr(bench, "_clock_search", _refuse)
    cfg = dict(bench.SIZES["tiny"])
    problems = {"gaussian": (bench.portfolio_problem(cfg["dim"], "gaussian", dtype=bench.jnp.float32),) * 2}
    grid = [_row("c", "saa", 512), _row("c", "self_structuring", 256)]
    done = [dict(returns="gaussian", tail_prob=1e-2, method="SAA HiGHS", n_final=512)]
    out = bench.wall_clock(problems, grid, cfg, bench.jax.random.PRNGKey(5), ["SAA HiGHS"], done=done)
    assert out == done


def test_resume_refuses_a_checkpoint_of_other_settings(tmp_path):
    run = dict(size="tiny", config=dict(bench.SIZES["tiny"]), returns=["gaussian"], methods=None, clock_methods=None)
    path = tmp_path / "checkpoint.json"
    bench._write_atomic(path, dict(run=run, rows=[_row("a", "saa", 512)], curves=[], wall_clock=[]))
    assert bench._load_checkpoint(path, run)["rows"][0]["n"] == 512
    other = dict(run, returns=["t"])
    with pytest.raises(SystemExit, match="belongs to another run"):
        bench._load_checkpoint(path, other)
    assert json.loads(path.read_text())["run"]["returns"] == ["gaussian"]

"""The benchmarks' baseline registry: every method has a loss and its options, and a named
baseline trains and decides through the library's public API."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.setups.dfl import BASELINES, METHODS, POOL_METHODS, decide_baseline, loss_options, train_baseline
from tailjax.dfl import make_instance


def test_every_method_has_a_loss_and_its_options():
    assert set(METHODS) == set(BASELINES) and set(POOL_METHODS) <= set(METHODS)
    for m in POOL_METHODS:
        assert loss_options(m, pool_size=7)["pool_size"] == 7
    assert loss_options("dfl+", tail_prob=0.2, num_samples=4, sigma=0.3) == dict(sigma=0.3, tail_prob=0.2,
                                                                                num_samples=4)
    assert loss_options("mse") == {} and loss_options("listwise", temperature=2.0)["temperature"] == 2.0
    assert loss_options("diff-dro", tail_prob=0.2, cov="S", radius=0.5) == dict(cov="S", tail_prob=0.2, radius=0.5)
    with pytest.raises(ValueError, match="method"):
        loss_options("blackbox")


@pytest.fixture(scope="module")
def sp():
    inst = make_instance("shortest_path", num_data=40, num_features=3, deg=2, seed=0)
    return inst, inst.features, inst.costs


def test_named_baseline_trains_and_decides(sp):
    inst, x, c = sp
    point = train_baseline("nce", jax.random.key(0), inst, x, c, epochs=1, batch_size=16, solve_ratio=0.5)
    assert point.sigma is None and point.result.history["loss"].shape == (2,)
    assert point.result.state.cache.shape == (80, 40)  # the pool method's cache grows with solve_ratio
    np.testing.assert_allclose(jnp.sum(decide_baseline(point, x[:3], inst), axis=1), 8.0)
    with pytest.raises(ValueError, match="epochs"):
        train_baseline("mse", jax.random.key(0), inst, x, c, epochs=0)


@pytest.mark.parametrize("method", ["mse_log", "spo+_log", "nce_log", pytest.param("dfl_log", marks=pytest.mark.slow)])
def test_log_link_baselines_decide_on_positive_predictions_and_refuse_non_positive_costs(sp, method):
    from tailjax.nn import LogLinkPredictor

    inst, x, c = sp
    trained = train_baseline(method, jax.random.key(0), inst, x, c, epochs=2, batch_size=16)
    assert isinstance(trained.predictor, LogLinkPredictor)
    assert bool(jnp.all(trained.predictor.apply(trained.params, jnp.asarray(x[:5])) > 0))
    np.testing.assert_allclose(jnp.sum(decide_baseline(trained, x[:3], inst), axis=1), 8.0)
    with pytest.raises(ValueError, match="costs must be positive"):
        train_baseline(method, jax.random.key(0), inst, x, np.zeros_like(c), epochs=1)


def test_log_link_variants_take_their_losses_options():
    from benchmarks.setups.dfl.baselines import LOG_LINK

    for m in ("nce", "map", "pairwise", "listwise", "dfl", "dfl+", "spo+"):
        assert f"{m}_log" in LOG_LINK and BASELINES[f"{m}_log"] is BASELINES[m]
        opts = dict(tail_prob=0.5, sigma=0.3, margin=0.2, temperature=2.0)
        assert loss_options(f"{m}_log", **opts) == loss_options(m, **opts)
    assert {"pairwise_log", "nce_log"} <= set(POOL_METHODS) and "dfl_log" not in POOL_METHODS
    assert BASELINES["mse_log"] is not BASELINES["mse"]  # MSE on log costs, its own loss


@pytest.mark.slow
def test_dfl_plus_baseline_samples_its_decisions(sp):
    inst, x, c = sp
    trained = train_baseline("dfl+", jax.random.key(0), inst, x, c, epochs=1, batch_size=16, num_samples=4,
                             tail_prob=0.5)
    assert trained.sigma == pytest.approx(0.5 * float(np.mean(np.std(c, axis=0))), rel=1e-5)
    w = decide_baseline(trained, x[:3], inst, tail_prob=0.5, key=jax.random.key(1), num_samples=8)
    assert w.shape == (3, 40) and bool(jnp.all(jnp.isfinite(w)))


@pytest.mark.slow
def test_diff_dro_baseline_fits_its_ambiguity_set_and_decides_robustly(sp):
    from tailjax.dfl import moment_dro_decision, residual_covariance

    inst, x, c = sp
    trained = train_baseline("diff-dro", jax.random.key(0), inst, x[:32], c[:32], epochs=1, batch_size=16,
                             tail_prob=0.2, validation=(x[32:], c[32:]), patience=1)
    cov, radius = trained.ambiguity
    np.testing.assert_allclose(cov, residual_covariance(x[:32], c[:32]))
    w = decide_baseline(trained, x[:2], inst, tail_prob=0.2)
    c_hat = trained.predictor.apply(trained.params, jnp.asarray(x[:2], jnp.float32))
    expected = jax.vmap(lambda ch: moment_dro_decision(inst.problem, ch, cov, 0.2, radius=radius))(c_hat)
    np.testing.assert_allclose(w, expected, atol=1e-5)
    point = decide_baseline(trained._replace(ambiguity=None), x[:2], inst)
    assert float(jnp.max(jnp.abs(w - point))) > 1e-2  # the robust path differs from the point decision


def test_tuned_baseline_keeps_the_best_validation_run(sp):
    from benchmarks.setups.dfl import tune_baseline

    inst, x, c = sp
    tuned = tune_baseline("mse", jax.random.key(0), inst, x[:24], c[:24], (x[24:], c[24:]),
                          learning_rates=(0.01, 0.1), predictors=("linear",), max_epochs=6, patience=2,
                          batch_size=8)
    runs = tuned.choice["runs"]
    assert len(runs) == 2 and tuned.choice["validation_regret"] == min(r["best"] for r in runs)
    assert all(r["curve"][0][0] == 0 and r["epochs_run"] <= 6 for r in runs)
    assert decide_baseline(tuned, x[:2], inst).shape == (2, 40)


@pytest.mark.slow  # fast-suite time; a benchmark's resume
def test_tuned_baseline_goes_on_from_its_checkpoints(sp, tmp_path, monkeypatch):
    from benchmarks.setups import dfl as setups
    from benchmarks.setups.dfl import tune_baseline
    from tailjax.checkpoint import CheckpointError

    inst, x, c = sp
    tune = lambda run: tune_baseline("mse", jax.random.key(0), inst, x[:24], c[:24], (x[24:], c[24:]),  # noqa: E731
                                     learning_rates=(0.01, 0.1), predictors=("linear",), max_epochs=4, patience=2,
                                     batch_size=8, checkpoint_dir=tmp_path, run=run)
    first = tune({"cell": 1})
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["mse_linear_lr0.01.ckpt", "mse_linear_lr0.1.ckpt"]

    def mse_loss(*args, **kwargs):  # the same name, so the checkpoints' header still matches
        raise AssertionError("trained again")

    monkeypatch.setitem(setups.baselines.BASELINES, "mse", mse_loss)
    again = tune({"cell": 1})  # both settings finished: restored, not trained
    assert again.choice["runs"] == first.choice["runs"]
    jax.tree_util.tree_map(np.testing.assert_array_equal, again.params, first.params)
    files[1].unlink()  # a setting the interrupted tuning had not reached is trained
    with pytest.raises(AssertionError, match="trained again"):
        tune({"cell": 1})
    with pytest.raises(CheckpointError, match="run"):  # another cell's checkpoint is refused
        tune({"cell": 2})


def test_a_table1_cell_keeps_its_checkpoints_only_on_resume(tmp_path):
    from types import SimpleNamespace

    from benchmarks.seeds.gen_dfl import _cell_checkpoints

    cfg = dict(protocol="paper-code", degs=(2, 8), steps=5)
    args = SimpleNamespace(out=tmp_path, size="small", resume=True)
    folder, run = _cell_checkpoints(args, cfg, "table1", problem="knapsack", deg=2, seed=3)
    assert folder == tmp_path / "partial" / "table1_problemknapsack_deg2_seed3"
    assert run["cell"] == dict(experiment="table1", problem="knapsack", deg=2, seed=3)
    assert "degs" not in run["config"] and run["config"]["steps"] == 5 and run["protocol"] == "paper-code"
    folder.mkdir(parents=True)
    (folder / "x.ckpt").write_text("kept")
    assert _cell_checkpoints(args, cfg, "table1", problem="knapsack", deg=2, seed=3)[0].joinpath("x.ckpt").exists()
    _cell_checkpoints(SimpleNamespace(out=tmp_path, size="small", resume=False), cfg, "table1", problem="knapsack",
                      deg=2, seed=3)
    assert not folder.exists()  # a fresh run does not go on from an earlier run's checkpoints


def test_a_sweep_configuration_checkpoints_its_baselines_and_drops_them_when_done(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from benchmarks.seeds import gen_dfl
    from benchmarks.setups.dfl import SIZES

    seen = []

    def fake_evaluate(cfg, inst, x, c, n_train, seed, *, methods, checkpoint_dir=None, run=None, **kw):
        seen.append((checkpoint_dir, run))
        checkpoint_dir.mkdir(parents=True)
        (checkpoint_dir / "mse_linear_lr0.01.ckpt").write_text("state")  # what tune_baseline leaves while training
        return ({"gen_dfl": {(0.1, "cvar_of_difference"): 1.0}},)

    monkeypatch.setattr(gen_dfl, "evaluate", fake_evaluate)
    cfg = dict(SIZES["small"], sigmas=(40,))
    args = SimpleNamespace(out=tmp_path, size="small", resume=True, seeds=1, first_seed=2)
    recs = gen_dfl.run_experiment("sigma", cfg, args, log=lambda s: None)
    [(folder, run)] = seen
    assert folder == tmp_path / "partial" / "sigma_seed2_sigma40"
    assert run["cell"] == dict(experiment="sigma", seed=2, sigma=40)
    assert [r["regret"] for r in recs] == [1.0]
    assert not (tmp_path / "partial").exists()  # the finished configuration's checkpoints are gone


def _check_feasible(inst, rows):
    poly = inst.problem.polytope
    for name, w in rows.items():
        assert w.shape == (3, inst.problem.dim), name
        assert bool(jnp.all((w >= poly.lower - 1e-6) & (w <= poly.upper + 1e-6))), name
        assert bool(jnp.all(w @ poly.ineq_matrix.T <= poly.ineq_rhs + 1e-5)), name
        np.testing.assert_allclose(w @ poly.eq_matrix.T, jnp.broadcast_to(poly.eq_rhs, (3, poly.eq_rhs.shape[0])),
                                   atol=1e-4, err_msg=name)


def test_data_free_rows_are_feasible():
    from benchmarks.setups.dfl import data_free_decisions

    for name, kw in (("knapsack", dict(num_items=6)), ("energy", {}), ("shortest_path", {})):
        inst = make_instance(name, num_data=10, **kw)
        rows = data_free_decisions(name, inst, inst.costs, 3)
        assert len(rows) == (1 if name == "shortest_path" else 2)
        _check_feasible(inst, rows)
    inst = make_instance("portfolio", num_data=10, num_assets=6)
    rows = data_free_decisions("portfolio", inst, inst.costs, 3)
    assert set(rows) == {"mean_cost", "equal_weights"}
    _check_feasible(inst, {"equal_weights": rows["equal_weights"]})


def test_portfolio_mean_cost_row_is_feasible():
    from benchmarks.setups.dfl import data_free_decisions

    inst = make_instance("portfolio", num_data=10, num_assets=6)
    _check_feasible(inst, {"mean_cost": data_free_decisions("portfolio", inst, inst.costs, 3)["mean_cost"]})


@pytest.mark.slow  # fast-suite time; a benchmark's resume
def test_a_cell_cut_short_keeps_gen_dfl_and_does_not_train_it_again(tmp_path, monkeypatch):
    from benchmarks.setups.dfl import SIZES
    from benchmarks.setups.dfl.gen_dfl import evaluate, make_data
    from tailjax.checkpoint import CheckpointError
    from tailjax.dfl import gen_dfl_fit

    cfg = dict(SIZES["small"], steps=3, proxy_steps=2, n_train=24, n_test=4, dim=3, Kq=4, eval_samples=64,
               Kref=8, eval_every=1, K=4, K_eval=4)
    inst, x, c = make_data("portfolio", 4, 0, 28, 3)
    run = lambda cell: evaluate(cfg, inst, x, c, 24, 0, methods=("gen_dfl",), model=inst.model,  # noqa: E731
                                checkpoint_dir=tmp_path, run={"cell": cell})[0]["gen_dfl"]
    first = run(1)
    assert (tmp_path / "gen_dfl.ckpt").exists()
    real = gen_dfl_fit._sweep_kernel

    def no_training(flow, static):
        def step(*args):
            raise AssertionError("trained again")
        return real(flow, static)._replace(step=step)

    monkeypatch.setattr(gen_dfl_fit, "_sweep_kernel", no_training)
    assert run(1) == first  # finished: restored, not trained
    with pytest.raises(CheckpointError, match="run"):  # another cell's checkpoint is refused
        run(2)
    (tmp_path / "gen_dfl.ckpt").unlink()
    with pytest.raises(AssertionError, match="trained again"):
        run(1)

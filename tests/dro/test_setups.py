"""The GAS-DRO benchmarks' experiment code (``benchmarks/setups/dro``): method registry,
recipes and task constants."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.setups.dro import (
    METHODS,
    PAPER_NOISE_LEVEL,
    MethodSettings,
    Resources,
    classification_loss,
    digits_setup,
    estimate_reconstruction,
    evaluate,
    forecast_loss,
    matched_last_steps,
    train_generator,
    train_method,
    with_learning_rates,
)
from tailjax.dro import AmbiguitySet, GasDroConfig, gmm_mle
from tailjax.nn import MLPClassifier, MLPForecaster
from tailjax.nn.ddpm import make_schedule


def _toy():
    """Windows of 4 values from a noisy ramp; a Gaussian 'generator' N(theta, 0.1^2 I)."""
    k1, k2 = jax.random.split(jax.random.key(0))
    base = jnp.linspace(0.0, 1.0, 4)
    data = base + 0.3 * jax.random.normal(k1, (64, 1)) + 0.05 * jax.random.normal(k2, (64, 4))
    model = MLPForecaster((8,))
    params = model.init(jax.random.key(1), data[0, :-1])
    loss = forecast_loss(model)

    def sample(key, theta, n):
        x = theta + 0.1 * jax.random.normal(key, (n, 4))
        return x, x

    def log_prob(theta, x):
        return -0.5 * jnp.sum(((x - theta) / 0.1) ** 2, -1)

    def recon(theta, batch, key):
        return jnp.mean((batch - theta) ** 2)

    aset = AmbiguitySet(sample, log_prob, recon)
    theta0 = jnp.mean(data, 0)
    res = Resources(ambiguity_set=aset, generator_params=theta0, generator_data=np.asarray(data),
                    dml_data=np.concatenate([np.asarray(data), np.asarray(sample(jax.random.key(2), theta0, 64)[0])]),
                    encode=lambda s: s, decode=lambda z, s: z, pdro_features=lambda s: s,
                    pdro_nominal=gmm_mle(jax.random.key(3), data, components=2, iters=10))
    return loss, params, np.asarray(data), res


@pytest.mark.parametrize("name", [m if m == "GAS-DRO" else pytest.param(m, marks=pytest.mark.slow)
                                  for m in METHODS])
def test_every_method_trains_the_same_predictor(name):
    loss, params, data, res = _toy()
    settings = MethodSettings(steps=30, batch_size=16, learning_rate=1e-2, gas_data_batch=16,
                              gas=GasDroConfig(inner_steps=1, epochs=1, num_samples=8, outer_samples=16,
                                               budget=0.2))
    w, cost, hist = train_method(name, jax.random.key(4), loss, params, data, res, settings,
                                 measure_memory=True)
    assert jax.tree_util.tree_structure(w) == jax.tree_util.tree_structure(params)
    before = evaluate(loss, params, {"d": data})["d"]
    after = evaluate(loss, w, {"d": data})["d"]
    assert after < before
    assert cost["seconds"] > 0 and (cost["step_bytes"] is None or cost["step_bytes"] > 0)
    assert all(np.all(np.isfinite(v)) for v in hist.values())


@pytest.mark.slow  # fit_gas_dro's resume is tested in the fast suite (test_gas_dro.py)
def test_train_method_checkpoint_resumes(tmp_path):
    loss, params, data, res = _toy()
    settings = MethodSettings(steps=6, batch_size=16, learning_rate=1e-2, gas_data_batch=16,
                              gas=GasDroConfig(inner_steps=1, epochs=1, num_samples=8, outer_samples=16,
                                               budget=0.2))
    path = tmp_path / "gas.ckpt"
    full, _, _ = train_method("GAS-DRO", jax.random.key(4), loss, params, data, res, settings)
    train_method("GAS-DRO", jax.random.key(4), loss, params, data, res, settings._replace(steps=3),
                 checkpoint_path=path)
    resumed, _, hist = train_method("GAS-DRO", jax.random.key(4), loss, params, data, res, settings,
                                    checkpoint_path=path)
    for a, b in zip(jax.tree_util.tree_leaves(full), jax.tree_util.tree_leaves(resumed)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert hist["mu"].shape == (6,)


def test_train_method_validation():
    loss, params, data = (lambda w, x: jnp.sum(w * x)), jnp.zeros(2), np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match="name"):
        train_method("ERM", jax.random.key(0), loss, params, data)
    with pytest.raises(ValueError, match="ambiguity_set"):
        train_method("GAS-DRO", jax.random.key(0), loss, params, data)


def test_recipes_losses_and_generator_training():
    clf = MLPClassifier(hidden=4, num_classes=3, image_ndim=1)
    p = clf.init(jax.random.key(0), jnp.zeros(5))
    f = classification_loss(clf, 3)
    x, y = jnp.ones(5), jax.nn.one_hot(1, 3)
    np.testing.assert_allclose(f(p, (x, y)), jnp.mean((clf.apply(p, x) - y) ** 2), rtol=1e-6)
    ev = evaluate(f, p, {"a": (jnp.ones((7, 5)), jnp.tile(y, (7, 1)))}, chunk=3)
    np.testing.assert_allclose(ev["a"], f(p, (x, y)), rtol=1e-5)
    # train_generator: fit a mean by least squares
    data = jnp.arange(20.0).reshape(10, 2)
    theta, trace = train_generator(jax.random.key(1), lambda th, b, k: (jnp.mean((b - th) ** 2), {}),
                                   jnp.zeros(2), data, num_steps=300, batch_size=5, learning_rate=0.5)
    np.testing.assert_allclose(theta, data.mean(0), atol=0.5)
    assert trace.shape == (300,) and trace[-1] < trace[0]
    # estimate_reconstruction averages recon(params, data, key) over keys
    recon = lambda th, b, k: jnp.mean((b - th) ** 2) + 0.0 * jax.random.normal(k)
    np.testing.assert_allclose(estimate_reconstruction(recon, jnp.zeros(2), jax.random.key(2), data, reps=3),
                               jnp.mean(data**2), rtol=1e-6)


def test_matched_last_steps_follows_the_noise_level():
    assert matched_last_steps(make_schedule(500)) == 15  # the paper's T' = 15 of T = 500
    for T, beta_end in ((50, 0.4), (40, 0.5), (200, 0.1)):
        sched = make_schedule(T, beta_end=beta_end)
        k = matched_last_steps(sched)
        noise = np.sqrt(1.0 - np.asarray(sched.alpha_bars))
        assert noise[k - 1] >= PAPER_NOISE_LEVEL and (k == 1 or noise[k - 2] < PAPER_NOISE_LEVEL)
    assert matched_last_steps(make_schedule(10), level=2.0) == 10  # capped at T


def test_digits_setup_rejects_a_bad_validation_fraction():
    with pytest.raises(ValueError, match="validation"):
        digits_setup(jax.random.key(0), validation=0.5)


def test_scorer_shares_one_compilation_and_equals_evaluate():
    from benchmarks.setups.dro import scorer

    model = MLPForecaster((4,))
    loss = forecast_loss(model)
    params = model.init(jax.random.key(0), jnp.zeros(3))
    sets = {"a": np.random.default_rng(0).normal(size=(37, 4)).astype(np.float32),
            "b": np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)}
    got = scorer(loss, sets, chunk=16)(params)
    ref = evaluate(loss, params, sets)
    for k in sets:
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-5)
    np.testing.assert_allclose(scorer(loss, sets["a"], chunk=16)(params), ref["a"], rtol=1e-5)


def test_reference_forecasts_persistence_and_seasonal_naive():
    from benchmarks.setups.dro import persistence_mse, reference_rows, seasonal_naive_mse

    w = np.stack([np.arange(26.0) + i for i in range(3)])  # a ramp: persistence is off by 1
    assert persistence_mse(w) == 1.0
    assert seasonal_naive_mse(w, 24) == 24.0**2
    rows = reference_rows({"x": w})
    assert rows == {"persistence": {"x": 1.0}, "seasonal naive": {"x": 576.0}}
    with pytest.raises(ValueError, match="period"):
        seasonal_naive_mse(w, 26)


def test_verdicts_follow_the_sign_test_over_seeds():
    from benchmarks.setups.dro import best_baseline, compare, verdict

    assert verdict([1, 1, 1, 1, 1], [2, 2, 2, 2, 2])["verdict"] == "win"
    assert verdict([3, 3, 3, 3, 3], [2, 2, 2, 2, 2])["verdict"] == "loss"
    v = verdict([1, 3, 1, 1, 1], [2, 2, 2, 2, 2])
    assert v["verdict"] == "tie" and (v["wins"], v["losses"]) == (4, 1)
    run = lambda gas, ml, kl, pers: {  # noqa: E731
        n: {"mse": {"s": m}, "average": m, "worst": m}
        for n, m in (("GAS-DRO", gas), ("ML", ml), ("KL-DRO", kl), ("persistence", pers))}
    runs = [run(1.0, 2.0, 1.5, 0.5) for _ in range(5)]
    assert best_baseline(runs) == "KL-DRO"
    comp = compare(runs)
    assert comp["KL-DRO"]["s"]["verdict"] == "win" and comp["persistence"]["average"]["verdict"] == "loss"


def test_gas_dro_benchmark_refuses_a_step_cap_below_one(tmp_path):
    from benchmarks.seeds import gas_dro

    with pytest.raises(SystemExit):
        gas_dro.main(["--size", "smoke", "--out", str(tmp_path), "--max-steps", "0"])


@pytest.mark.slow
def test_gas_dro_benchmark_runs_every_carbon_part_at_smoke_size(tmp_path, data_dir):
    from benchmarks.seeds import gas_dro

    report = gas_dro.main(["--size", "smoke", "--data", str(data_dir), "--out", str(tmp_path), "--protocols", "today",
                           "--parts", "carbon", "corruptions", "budget", "capacity", "--methods", "ML", "KL-DRO", "GAS-DRO",
                           "--max-steps", "4", "--gas-lr", "1e-3", "--capacity", "8", "VAE", "DML-VAE",
                           "VAE-frozen", "8-frozen"])
    res = report["per_seed"]["0"]["today"]["results"]
    assert report["settings"]["settings"]["steps"] == 4 and res["ML"]["steps"] <= 4
    assert report["settings"]["settings"]["gas_learning_rate"] == 1e-3
    budget = report["per_seed"]["0"]["today"]["budget"]
    assert all(np.isfinite(b["final_mu"]) and b["final_mu"] >= 0 for b in budget.values())
    assert {"ML", "KL-DRO", "GAS-DRO", "GAS-DRO (FT)", "persistence", "seasonal naive"} <= set(res)
    capacity = report["per_seed"]["0"]["today"]["capacity"]
    assert set(capacity) == {"DDPM (8,)", "DDPM (8,), adversary frozen", "VAE", "DML on VAE samples",
                             "VAE, adversary frozen"}
    assert capacity["DDPM (8,), adversary frozen"]["path_kl"] == 0.0 and capacity["DDPM (8,)"]["path_kl"] != 0.0
    assert set(capacity["VAE"]["mse"]) == set(res["ML"]["mse"])  # per test set
    frozen = capacity["VAE, adversary frozen"]  # the adversary never leaves theta_0
    assert frozen["path_kl"] == 0.0 and capacity["VAE"]["path_kl"] != 0.0
    control = capacity.pop("DML on VAE samples")  # ERM: no dual variable, the VAE's J0
    assert "final_mu" not in control and control["J0"] == capacity["VAE"]["J0"] and np.isfinite(control["average"])
    assert all(np.isfinite([c["J0"], c["final_J"], c["final_mu"], c["average"]]).all() for c in capacity.values())
    assert "| DML on VAE samples | 1 |" in (tmp_path / "gas_dro.md").read_text()
    assert (tmp_path / "gas_dro.md").is_file() and (tmp_path / "gas_dro.png").is_file()
    assert "GAS-DRO" in report["verdicts"]["today"]


def test_gas_dro_benchmark_refuses_a_learning_rate_that_is_not_positive(tmp_path, capsys):
    from benchmarks.seeds import gas_dro

    with pytest.raises(SystemExit):
        gas_dro.main(["--size", "smoke", "--out", str(tmp_path), "--lrs", "1e-3", "0"])
    assert "--lrs must be > 0" in capsys.readouterr().err


def test_gas_dro_benchmark_refuses_a_generator_step_that_is_not_positive(tmp_path, capsys):
    from benchmarks.seeds import gas_dro

    with pytest.raises(SystemExit):
        gas_dro.main(["--size", "smoke", "--out", str(tmp_path), "--gas-lr", "0"])
    assert "--gas-lr must be > 0" in capsys.readouterr().err


@pytest.mark.slow
def test_gas_dro_benchmark_chooses_the_learning_rate_on_validation(tmp_path, data_dir):
    from benchmarks.seeds import gas_dro

    report = gas_dro.main(["--size", "smoke", "--data", str(data_dir), "--out", str(tmp_path), "--protocols", "today",
                           "--parts", "carbon", "budget", "--methods", "ML", "GAS-DRO", "--lrs", "1e-3", "3e-2"])
    res = report["per_seed"]["0"]["today"]
    for name in ("ML", "GAS-DRO"):
        grid = res["results"][name]["grid"]
        assert {gas_dro.grid_values(tag)["lr"] for tag in grid} == {1e-3, 3e-2}
        assert res["results"][name]["selected"] == min(grid, key=lambda t: grid[t]["validation"])
    lr = gas_dro.grid_values(res["results"]["GAS-DRO"]["selected"])["lr"]
    assert [gas_dro.grid_values(t)["lr"] for t in res["results"]["GAS-DRO (FT)"]["grid"]] == [lr]
    assert len(res["budget"]) == len(gas_dro.SIZES["smoke"]["budget_deltas"])


def test_with_learning_rates_crosses_every_setting_with_every_rate():
    grid = {"": MethodSettings(), "kl_radius=1.0": MethodSettings(kl_radius=1.0)}
    out = with_learning_rates(grid, (1e-3, 3e-2))
    assert list(out) == ["lr=0.001", "lr=0.03", "kl_radius=1.0,lr=0.001", "kl_radius=1.0,lr=0.03"]
    assert out["kl_radius=1.0,lr=0.03"] == MethodSettings(kl_radius=1.0, learning_rate=3e-2)
    assert out["lr=0.001"] == MethodSettings(learning_rate=1e-3)


def test_digits_benchmark_refuses_a_learning_rate_that_is_not_positive(tmp_path, capsys):
    from benchmarks.seeds import gas_dro_digits

    with pytest.raises(SystemExit):
        gas_dro_digits.main(["--size", "smoke", "--out", str(tmp_path), "--lrs", "1e-3", "0"])
    assert "--lrs must be > 0" in capsys.readouterr().err


@pytest.mark.slow
def test_digits_benchmark_chooses_the_learning_rate_on_validation(tmp_path, data_dir):
    from benchmarks.seeds import gas_dro, gas_dro_digits

    report = gas_dro_digits.main(["--size", "smoke", "--data", str(data_dir), "--out", str(tmp_path), "--sources",
                                  "usps", "--methods", "ML", "KL-DRO", "--lrs", "1e-3", "3e-2"])
    assert report["lrs"] == [1e-3, 3e-2]
    for name in ("ML", "KL-DRO"):
        res = report["per_seed"]["0"]["usps"]["results"][name]
        assert {gas_dro.grid_values(tag)["lr"] for tag in res["grid"]} == {1e-3, 3e-2}
        assert res["selected"] == max(res["grid"], key=lambda t: res["grid"][t]["validation"])


def _fake_digits(calls):
    def run_digits(size, key, data, select, sources, methods, lrs=None):
        seed = int(jax.random.key_data(key).ravel()[-1])
        calls.append(seed)
        acc = {"USPS": 0.5 + 0.01 * seed, "sklearn": 0.4}
        return {s: {"results": {m: {"accuracy": acc, "average": 0.45, "worst": 0.4, "validation": 0.6}
                                for m in methods}, "info": {}} for s in sources}
    return run_digits


def test_digits_benchmark_resumes_the_missing_seeds_only(tmp_path, monkeypatch):
    from benchmarks.seeds import gas_dro_digits

    calls = []
    monkeypatch.setattr(gas_dro_digits, "run_digits", _fake_digits(calls))
    args = ["--size", "smoke", "--out", str(tmp_path), "--sources", "usps", "--methods", "ML", "--lrs", "1e-3"]
    first = gas_dro_digits.main(args + ["--seeds", "2"])
    resumed = gas_dro_digits.main(args + ["--seeds", "3", "--resume"])
    assert calls == [0, 1, 2]  # seeds 0 and 1 came from the checkpoint
    assert resumed["per_seed"]["1"] == json.loads(json.dumps(first["per_seed"]["1"]))
    assert sorted(json.loads((tmp_path / "gas_dro_digits.json").read_text())["per_seed"]) == ["0", "1", "2"]


def test_digits_benchmark_refuses_to_resume_another_run(tmp_path, monkeypatch):
    from benchmarks.seeds import gas_dro_digits

    monkeypatch.setattr(gas_dro_digits, "run_digits", _fake_digits([]))
    args = ["--size", "smoke", "--out", str(tmp_path), "--sources", "usps", "--methods", "ML"]
    gas_dro_digits.main(args + ["--lrs", "1e-3"])
    with pytest.raises(SystemExit, match="differs in lrs"):
        gas_dro_digits.main(args + ["--lrs", "3e-4", "--resume"])


def test_digits_benchmark_merges_runs_of_other_seeds_and_refuses_mismatches(tmp_path, monkeypatch):
    from benchmarks.seeds import gas_dro_digits

    monkeypatch.setattr(gas_dro_digits, "run_digits", _fake_digits([]))
    args = ["--size", "smoke", "--sources", "usps", "--methods", "ML", "--lrs", "1e-3"]
    gas_dro_digits.main(args + ["--out", str(tmp_path / "a"), "--seeds", "2"])
    gas_dro_digits.main(args + ["--out", str(tmp_path / "b"), "--first-seed", "2"])
    gas_dro_digits.main(args[:-1] + ["3e-4", "--out", str(tmp_path / "c"), "--first-seed", "3"])
    a, b, c = (str(tmp_path / d / "gas_dro_digits.json") for d in "abc")
    merged = gas_dro_digits.main(["--merge", a, b, "--out", str(tmp_path / "m")])
    assert merged["seeds"] == [0, 1, 2] and merged["lrs"] == [1e-3]
    assert merged["per_seed"]["2"]["usps"]["results"]["ML"]["accuracy"]["USPS"] == pytest.approx(0.52)
    assert "(3 seeds)" in (tmp_path / "m" / "gas_dro_digits.md").read_text()
    with pytest.raises(SystemExit, match="differs from .* in lrs"):
        gas_dro_digits.main(["--merge", a, c, "--out", str(tmp_path / "m2")])
    with pytest.raises(SystemExit, match="seeds 0, 1 of"):
        gas_dro_digits.main(["--merge", a, a, "--out", str(tmp_path / "m3")])


def _fake_carbon(calls):
    from benchmarks.seeds import gas_dro

    def carbon_parts(cfg, key, protocol, args, log=print, fits=None):
        calls.append(("carbon", tuple(args.methods)))
        results = {m: {"mse": {"A": 0.1}, "average": 0.1, "worst": 0.1, "validation": 0.1} for m in args.methods}
        report = {"results": {**results, "persistence": {"mse": {"A": 0.2}, "average": 0.2, "worst": 0.2}},
                  "info": {"J0": 0.5, "J_sd": 0.01, "train_zone": "CAISO", "train_years": [2023], "scaling": "own",
                           "train_windows": 10, "last_steps": 2, "wasserstein": {"A": 0.1}}}
        if "budget" in args.parts:
            gas_dro.budget_choice(cfg, results)
            report["budget"] = {str(d): {"average": d, "worst": d, "validation": d} for d in cfg["budget_deltas"]}
        return report

    def capacity(cfg, key, protocol, args, log=print, fits=None):
        calls.append(("capacity", cfg["capacity"]))
        return {str(v): {"average": 0.3, "worst": 0.3, "validation": 0.3} for v in cfg["capacity"]}

    return carbon_parts, capacity


def test_gas_dro_benchmark_splits_the_budget_curve_and_table_5_over_runs_and_merges_them(tmp_path, monkeypatch):
    from benchmarks.seeds import gas_dro

    calls = []
    carbon_parts, capacity = _fake_carbon(calls)
    monkeypatch.setattr(gas_dro, "carbon_parts", carbon_parts)
    monkeypatch.setattr(gas_dro, "capacity", capacity)
    monkeypatch.setattr(gas_dro, "plot", lambda report, out: None)
    args = ["--size", "smoke", "--protocols", "paper", "--compile-cache", "none"]
    gas_dro.main(args + ["--parts", "carbon", "--methods", "ML", "GAS-DRO", "--out", str(tmp_path / "a")])
    # the budget curve without GAS-DRO's own run (the smoke size has one lambda), in two halves
    gas_dro.main(args + ["--parts", "budget", "--methods", "--budget-deltas", "0.01", "--out", str(tmp_path / "b")])
    gas_dro.main(args + ["--parts", "budget", "--methods", "--budget-deltas", "0.1", "0.2", "--out", str(tmp_path / "c")])
    # Table 5 alone: no carbon set-up, one process per variant
    gas_dro.main(args + ["--parts", "capacity", "--capacity", "16,32", "--out", str(tmp_path / "d")])
    gas_dro.main(args + ["--parts", "capacity", "--capacity", "VAE", "--out", str(tmp_path / "e")])
    assert calls == [("carbon", ("ML", "GAS-DRO")), ("carbon", ()), ("carbon", ()),
                     ("capacity", ((16, 32),)), ("capacity", ("VAE",))]
    assert "Table 5" in (tmp_path / "d" / "gas_dro.md").read_text()
    merged = gas_dro.main(["--merge", *(str(tmp_path / d / "gas_dro.json") for d in "abcde"),
                           "--out", str(tmp_path / "m")])
    paper = merged["per_seed"]["0"]["paper"]
    assert {"ML", "GAS-DRO", "persistence"} <= set(paper["results"])
    assert set(paper["budget"]) == {"0.01", "0.1", "0.2"}
    assert set(paper["capacity"]) == {"(16, 32)", "VAE"}
    text = (tmp_path / "m" / "gas_dro.md").read_text()
    assert "GAS-DRO against the budget delta" in text and "Table 5" in text


def test_gas_dro_benchmark_refuses_a_budget_curve_whose_lambda_is_not_chosen(tmp_path, capsys):
    from benchmarks.seeds import gas_dro

    with pytest.raises(SystemExit):  # the paper size's grid has two lambdas and three rates
        gas_dro.main(["--size", "paper", "--out", str(tmp_path), "--compile-cache", "none", "--parts", "budget",
                      "--methods", "ML"])
    assert "needs GAS-DRO in --methods" in capsys.readouterr().err
    cfg = dict(gas_dro.SIZES["paper"])
    with pytest.raises(ValueError, match="needs GAS-DRO in --methods"):
        gas_dro.budget_choice(cfg, {"ML": {}})
    assert gas_dro.budget_choice(dict(cfg, lams=(0.5,), lrs=(1e-3,)), {}) == (0.5, 1e-3)
    assert gas_dro.budget_choice(cfg, {"GAS-DRO": {"selected": "lam=0.5,delta=0.02,lr=0.003"}}) == (0.5, 0.003)


def test_gas_dro_benchmark_refuses_a_capacity_variant_that_is_not_widths(tmp_path, capsys):
    from benchmarks.seeds import gas_dro

    with pytest.raises(SystemExit):
        gas_dro.main(["--size", "smoke", "--out", str(tmp_path), "--capacity", "wide"])
    assert "--capacity takes widths" in capsys.readouterr().err


@pytest.mark.slow
def test_gas_dro_benchmark_resumes_a_run_cut_short(tmp_path, data_dir, monkeypatch):
    from benchmarks import _harness as harness
    from benchmarks.seeds import gas_dro
    from tailjax import checkpoint

    args = ["--size", "smoke", "--data", str(data_dir), "--out", str(tmp_path), "--protocols", "today",
            "--parts", "carbon", "--methods", "ML", "KL-DRO", "--max-steps", "4"]
    train = gas_dro.train_method

    def cut(name, *a, **kw):  # the process dies while KL-DRO trains
        if name == "KL-DRO":
            raise KeyboardInterrupt
        return train(name, *a, **kw)

    monkeypatch.setattr(gas_dro, "train_method", cut)
    with pytest.raises(KeyboardInterrupt):
        gas_dro.main(args)
    folder = tmp_path / "partial" / "seed0_today" / "carbon"
    kept = [*folder.glob("ML_*.done"), folder / "ML.best"]  # ML finished: its record and predictor, not its state
    assert all(p.exists() for p in kept) and not list(folder.glob("ML_*.ckpt"))
    assert not (tmp_path / "gas_dro.json").exists()
    restored, restore = [], checkpoint.restore
    monkeypatch.setattr(gas_dro, "train_method", train)
    monkeypatch.setattr(checkpoint, "restore", lambda path, *a, **kw: restored.append(path) or restore(path, *a, **kw))
    report = gas_dro.main([*args, "--resume"])
    assert restored == kept  # ML's record and predictor were read back, not trained again; KL-DRO had none
    assert {"ML", "KL-DRO"} <= set(report["per_seed"]["0"]["today"]["results"])
    assert not (tmp_path / "partial" / "seed0_today").exists()  # removed once the protocol is in the JSON
    calls = []
    monkeypatch.setattr(gas_dro, "train_method", lambda *a, **kw: calls.append(a) or train(*a, **kw))
    again = gas_dro.main([*args, "--resume"])
    assert calls == [] and again["per_seed"] == harness.as_written(report["per_seed"])  # the finished protocol is kept
    with pytest.raises(SystemExit, match="differs in settings"):
        gas_dro.main([*args[:-1], "5", "--resume"])


def test_gas_dro_benchmark_resume_keeps_finished_protocols_and_refuses_other_settings(tmp_path, monkeypatch):
    from benchmarks.seeds import gas_dro

    calls, seen = [], []
    carbon_parts, capacity = _fake_carbon(calls)
    monkeypatch.setattr(gas_dro, "carbon_parts", lambda *a, **kw: seen.append(a[-1]) or carbon_parts(*a, **kw))
    monkeypatch.setattr(gas_dro, "capacity", capacity)
    monkeypatch.setattr(gas_dro, "plot", lambda report, out: None)
    args = ["--size", "smoke", "--compile-cache", "none", "--parts", "carbon", "--methods", "ML", "--out", str(tmp_path)]
    gas_dro.main(args + ["--protocols", "paper"])
    assert seen[0].folder == tmp_path / "partial" / "seed0_paper" and not seen[0].folder.exists()  # removed when done
    report = gas_dro.main(args + ["--protocols", "paper", "today", "--resume"])  # a protocol more
    assert calls == [("carbon", ("ML",)), ("carbon", ("ML",))] and set(report["per_seed"]["0"]) == {"paper", "today"}
    with pytest.raises(SystemExit, match="differs in methods"):
        gas_dro.main(args[:-3] + ["ML", "DML", "--out", str(tmp_path), "--resume"])

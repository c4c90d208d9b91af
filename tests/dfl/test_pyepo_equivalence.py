"""tailjax against PyEPO 2.2 itself: the data generators bit for bit, and the decisions and
regrets of PyEPO's own models (shortest-path LP, binary knapsack and its relaxation, the
variance-capped portfolio).

PyEPO needs torch, which has no build for this suite's Python; it runs in its own Python 3.11
environment, ``.venv-pyepo`` (``bash tests/dfl/make_pyepo_env.sh``, the Makefile's
``pyepo-env`` target), through ``tests/dfl/pyepo_reference.py``. Every test here skips,
saying so, only when that environment is absent (``TAILJAX_PYEPO_PYTHON`` points at another
interpreter).
"""

import json
import os
import pathlib
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tailjax.dfl import normalized_regret, objective
from tailjax.dfl.problems import (
    binary_knapsack,
    knapsack_gen_data,
    knapsack_problem,
    portfolio_gen_data,
    pyepo_knapsack_instance,
    pyepo_portfolio_instance,
    pyepo_risk_level,
    risk_capped_portfolio,
    shortest_path_gen_data,
    shortest_path_problem,
)
from tailjax.layers import fractional_knapsack, grid_shortest_path

ROOT = pathlib.Path(__file__).resolve().parents[2]
PYTHON = pathlib.Path(os.environ.get("TAILJAX_PYEPO_PYTHON", ROOT / ".venv-pyepo" / "bin" / "python"))
SCRIPT = pathlib.Path(__file__).with_name("pyepo_reference.py")
CASES = [
    # genData's positional arguments, as PyEPO 2.2 orders them
    {"name": "sp", "problem": "shortest_path", "gen": [40, 5, [5, 5], 4, 0.5, 7], "pred_seed": 1},
    {"name": "ks", "problem": "knapsack", "gen": [40, 5, 32, 1, 2, 0.5, 7], "capacity": [20.0],
     "pred_seed": 2},
    {"name": "pf", "problem": "portfolio", "gen": [20, 5, 12, 2, 1.0, 7], "pred_seed": 3},
]
TOL = 1e-6  # regrets: |tailjax - PyEPO| <= TOL * max(1, |z*|) per instance, TOL normalised


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    if not PYTHON.exists():
        pytest.skip(f"PyEPO reference environment absent ({PYTHON}): build it with "
                    "`make pyepo-env` (bash tests/dfl/make_pyepo_env.sh)")
    tmp = tmp_path_factory.mktemp("pyepo")
    spec, out = tmp / "spec.json", tmp / "ref.npz"
    spec.write_text(json.dumps({"cases": CASES}))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["TQDM_DISABLE"] = "1"
    proc = subprocess.run([str(PYTHON), str(SCRIPT), str(spec), str(out)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"pyepo_reference.py failed:\n{proc.stderr[-4000:]}"
    with np.load(out) as data:
        return {k: data[k] for k in data.files}


def _case(name):
    return next(c for c in CASES if c["name"] == name)


def test_generators_are_bit_identical(ref):
    assert str(ref["pyepo_version"]).startswith("2.2")
    sp, ks, pf = (_case(n)["gen"] for n in ("sp", "ks", "pf"))
    ours = {
        "sp": dict(zip(("x", "c"), shortest_path_gen_data(*sp))),
        "ks": dict(zip(("weights", "x", "c"), knapsack_gen_data(*ks))),
        "pf": dict(zip(("cov", "x", "c"), portfolio_gen_data(*pf))),
    }
    for name, arrays in ours.items():
        for field, a in arrays.items():
            b = ref[f"{name}/{field}"]
            assert a.dtype == b.dtype and a.shape == b.shape, (name, field, a.dtype, b.dtype)
            np.testing.assert_array_equal(a, b, err_msg=f"{name}/{field}")
    # the instances carry the same data
    inst = pyepo_portfolio_instance(20, 5, 12, 2, 1.0, 7)
    np.testing.assert_array_equal(inst.costs, ref["pf/c"])
    np.testing.assert_allclose(inst.model.covariance, ref["pf/cov"], atol=1e-6 * np.abs(ref["pf/cov"]).max())
    kinst = pyepo_knapsack_instance(40, 5, 32, 2, 0.5, 7, capacity=20.0, binary=True)
    np.testing.assert_array_equal(kinst.costs, ref["ks/c"])


def _regrets(problem, oracle, costs, preds):
    """Per-instance regret f(c, w(c_hat)) - f(c, w(c)) and PyEPO's normalised regret."""
    with jax.enable_x64(True):
        c = jnp.asarray(costs, jnp.float64)
        w_star = jax.jit(jax.vmap(oracle))(c)
        w_hat = jax.jit(jax.vmap(oracle))(jnp.asarray(preds, jnp.float64))
        f = jax.vmap(lambda ci, wi: objective(problem, ci, wi))
        per = np.asarray(f(c, w_hat) - f(c, w_star))
        norm = float(normalized_regret(w_hat, c, problem, oracle, optimal=w_star))
        return np.asarray(w_star), np.asarray(w_hat), per, norm


def _check_regrets(per, norm, ref, prefix):
    z = ref[f"{prefix}/obj"]
    np.testing.assert_array_less(np.abs(per - ref[f"{prefix}/regret"]), TOL * np.maximum(1.0, np.abs(z)))
    assert abs(norm - float(ref[f"{prefix}/regret_normalized"])) <= TOL
    assert norm > 0.01  # a real predictor, not a trivially zero regret


def test_shortest_path_lp_regret(ref):
    problem = shortest_path_problem((5, 5))
    oracle = lambda c: grid_shortest_path(c, (5, 5))  # noqa: E731
    w_star, w_hat, per, norm = _regrets(problem, oracle, ref["sp/c"], ref["sp/pred"])
    np.testing.assert_allclose(w_star, ref["sp/lp/sol"], atol=1e-6)
    np.testing.assert_allclose(w_hat, ref["sp/lp/pred_sol"], atol=1e-6)
    with jax.enable_x64(True):
        z = jax.vmap(lambda ci, wi: objective(problem, ci, wi))(jnp.asarray(ref["sp/c"], jnp.float64), w_star)
    np.testing.assert_allclose(np.asarray(z), ref["sp/lp/obj"], rtol=TOL)
    _check_regrets(per, norm, ref, "sp/lp")


def test_knapsack_relaxation_lp_regret(ref):
    weights, capacity = ref["ks/weights"][0], 20.0
    problem = knapsack_problem(weights, capacity)
    oracle = lambda c: fractional_knapsack(-c, jnp.asarray(weights), capacity)  # noqa: E731
    w_star, w_hat, per, norm = _regrets(problem, oracle, ref["ks/c"], ref["ks/pred"])
    np.testing.assert_allclose(w_star, ref["ks/relaxed/sol"], atol=1e-6)
    np.testing.assert_allclose(w_hat, ref["ks/relaxed/pred_sol"], atol=1e-6)
    _check_regrets(per, norm, ref, "ks/relaxed")


def test_binary_knapsack_matches_pyepo_exactly(ref):
    weights, capacity = ref["ks/weights"][0], 20.0
    problem = knapsack_problem(weights, capacity)
    dp = lambda v: binary_knapsack(v, weights, capacity, weight_unit=0.01)  # noqa: E731
    w_star, w_hat, per, norm = _regrets(problem, dp, ref["ks/c"], ref["ks/pred"])
    assert set(np.unique(w_star)) <= {0.0, 1.0} and np.all(w_star @ weights <= capacity + 1e-9)
    # integer values: the optimal values agree exactly, the decisions up to ties
    np.testing.assert_array_equal(np.sum(ref["ks/c"] * w_star, 1), ref["ks/binary/obj"])
    np.testing.assert_array_equal(w_hat, ref["ks/binary/pred_sol"])  # continuous c_hat: unique
    _check_regrets(per, norm, ref, "ks/binary")
    # the relaxation is an upper bound; the binary regrets differ from the relaxed ones
    assert np.all(ref["ks/relaxed/obj"] >= ref["ks/binary/obj"] - 1e-6)
    # branch and bound under jit (traced weights: no DP) finds the same optima
    with jax.enable_x64(True):
        bb = jax.jit(jax.vmap(lambda v, w: binary_knapsack(v, w, capacity, return_info=True),
                              in_axes=(0, None)))
        w_bb, info = bb(jnp.asarray(ref["ks/c"], jnp.float64), jnp.asarray(weights))
    assert bool(jnp.all(info.optimal))
    np.testing.assert_array_equal(np.asarray(info.value), ref["ks/binary/obj"])


def test_variance_capped_portfolio_matches_pyepo(ref):
    cov, c, pred = ref["pf/cov"], ref["pf/c"], ref["pf/pred"]
    var = lambda v: np.einsum("nd,de,ne->n", v, cov, v)  # noqa: E731
    raw = ref["pf/sol_raw"]  # PyEPO on the raw Sigma
    n = c.shape[0]
    with jax.enable_x64(True):
        cap = float(pyepo_risk_level(jnp.asarray(cov)))
        solve = jax.jit(jax.vmap(lambda r, level: risk_capped_portfolio(r, jnp.asarray(cov), level)))
        # three batches in one call: the true returns, the predictions, the true returns under
        # the variance PyEPO's raw-Sigma solutions reached
        rs = np.concatenate([c, pred, c]).astype(np.float64)
        levels = np.concatenate([np.full(2 * n, cap), var(raw)])
        w_all = np.asarray(solve(jnp.asarray(rs), jnp.asarray(levels)))
    w, w_hat, w_raw_cap = w_all[:n], w_all[n:2 * n], w_all[2 * n:]
    np.testing.assert_allclose(cap, float(ref["pf/risk_level"]), rtol=1e-12)
    # feasible, and as good as PyEPO's model (Sigma scaled to unit mean, the same set)
    assert np.all(np.abs(w.sum(1) - 1) < 1e-9) and w.min() > -1e-9
    assert np.all(var(w) <= cap * (1 + 1e-9))
    obj = np.sum(c * w, 1)
    np.testing.assert_allclose(obj, ref["pf/obj"], rtol=TOL)
    np.testing.assert_allclose(w, ref["pf/sol"], atol=1e-3)
    # PyEPO on the raw Sigma overshoots the cap of ~2e-5 by its absolute tolerance (1e-6);
    # given the variance PyEPO used, the JAX solver returns at least PyEPO's objective
    assert np.max(var(raw)) > cap
    assert np.all(np.sum(c * w_raw_cap, 1) >= ref["pf/obj_raw"] - 1e-7)
    # the predictor's regret, r^T w(r) - r^T w(r_hat) >= 0, as PyEPO's decisions give it
    regret = obj - np.sum(c * w_hat, 1)
    regret_pyepo = ref["pf/obj"] - np.sum(c * ref["pf/pred_sol"], 1)
    assert regret.min() > -1e-9 and regret.max() > 1e-3
    np.testing.assert_allclose(regret, regret_pyepo, atol=1e-3 * np.abs(obj).max())

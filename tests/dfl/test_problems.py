"""Problem generators: PyEPO 2.2 compatibility, shapes, seeds, true p(c|x) moments, problem
objectives and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tailjax.dfl.problems import (
    PROBLEMS,
    decision,
    energy_problem,
    knapsack_gen_data,
    make_instance,
    objective,
    portfolio_gen_data,
    shortest_path_gen_data,
    shortest_path_problem,
)

# Reference values printed by pyepo 2.2.7 (pyepo.data.*.genData) with the same arguments.
PYEPO_SP = dict(x=[1.7915310965993816, 2.2018563138041243, -0.03706690441882626],
                c=[0.54291683, 1.3199728, 0.06933075, 0.6093987], total=246.81553869508207)
PYEPO_KS = dict(w=[6.32, 4.61, 3.71], x=[-0.03107508846786004, -0.6834466274652374, 1.095629698519445],
                c=[3.0, 2.0, 2.0, 5.0], total=192.0)
PYEPO_PF = dict(cov=[2.3390294783915994e-04, -5.4844517083303144e-06, 5.8713972272754996e-06],
                x=[-1.0616344482718332, 0.21734820797221702, 0.11781950435342614],
                r=[0.09503297, 0.11833328, 0.10584725, 0.09905191], total=4.333133690059185)


def test_pyepo_shortest_path_arrays():
    x, c = shortest_path_gen_data(6, 3, (5, 5), 4, 0.5, 11)
    assert x.shape == (6, 3) and c.shape == (6, 40) and c.dtype == np.float32 and x.dtype == np.float64
    np.testing.assert_array_equal(x[1, :3], PYEPO_SP["x"])
    np.testing.assert_array_equal(c[2, :4], np.float32(PYEPO_SP["c"]))
    assert c.sum(dtype=np.float64) == PYEPO_SP["total"]


def test_pyepo_knapsack_arrays():
    w, x, c = knapsack_gen_data(6, 3, 7, 2, 3, 0.3, 11)
    assert w.shape == (2, 7) and x.shape == (6, 3) and c.shape == (6, 7)
    np.testing.assert_array_equal(w[1, :3], PYEPO_KS["w"])
    np.testing.assert_array_equal(x[0, :3], PYEPO_KS["x"])
    np.testing.assert_array_equal(c[3, :4], PYEPO_KS["c"])
    assert c.sum(dtype=np.float64) == PYEPO_KS["total"]


def test_pyepo_portfolio_arrays():
    cov, x, r = portfolio_gen_data(6, 3, 7, 2, 1.5, 11)
    assert cov.shape == (7, 7) and r.dtype == np.float32
    np.testing.assert_array_equal(cov[0, :3], PYEPO_PF["cov"])
    np.testing.assert_array_equal(x[5, :3], PYEPO_PF["x"])
    np.testing.assert_array_equal(r[4, :4], np.float32(PYEPO_PF["r"]))
    assert r.sum(dtype=np.float64) == PYEPO_PF["total"]


DIMS = {"portfolio": 50, "knapsack": 50, "shortest_path": 40, "energy": 48}


@pytest.mark.parametrize("name", PROBLEMS)
def test_instance_shapes_and_seeds(name):
    a = make_instance(name, num_data=12, deg=2, seed=5)
    b = make_instance(name, num_data=12, deg=2, seed=5)
    c = make_instance(name, num_data=12, deg=2, seed=6)
    d = DIMS[name]
    assert a.costs.shape == (12, d) and a.features.shape[0] == 12 and a.problem.dim == d
    np.testing.assert_array_equal(a.costs, b.costs)
    assert not np.array_equal(a.costs, c.costs)


@pytest.mark.parametrize("name", PROBLEMS)
def test_true_conditional_moments(name):
    inst = make_instance(name, num_data=4, deg=2, seed=1)
    x = jnp.asarray(inst.features[0], jnp.float32)
    samples = inst.model.sample(jax.random.key(0), x, 20000)
    mean = inst.model.mean(x)
    se = jnp.std(samples, axis=0) / np.sqrt(samples.shape[0])
    z = (jnp.mean(samples, axis=0) - mean) / jnp.maximum(se, 1e-9)
    assert float(jnp.max(jnp.abs(z))) < 5.0
    if name == "portfolio":  # the covariance is Sigma of the decision problem
        emp = jnp.cov(samples.T)
        np.testing.assert_allclose(emp, inst.problem.quadratic, atol=3e-3 * float(jnp.max(jnp.diag(emp))) ** 0.5 + 1e-3)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=() if n == "energy" else pytest.mark.slow) for n in PROBLEMS]
)
def test_oracle_is_optimal_against_decision_layer(name):
    inst = make_instance(name, num_data=3, deg=2, seed=2)
    c = jnp.asarray(inst.costs[0])
    w_oracle = inst.oracle(c)
    w_layer = decision(inst.problem, c[None], 1.0, reg=0.0)
    f_o, f_l = float(objective(inst.problem, c, w_oracle)), float(objective(inst.problem, c, w_layer))
    assert abs(f_o - f_l) <= 1e-4 * (1 + abs(f_o))


def test_data_set_draws_follow_the_model():
    inst = make_instance("shortest_path", num_data=2000, deg=1, noise_width=0.5, seed=0)
    ratio = inst.costs / np.asarray(jax.vmap(inst.model.mean)(jnp.asarray(inst.features, jnp.float32)))
    assert 0.5 - 1e-4 <= ratio.min() and ratio.max() <= 1.5 + 1e-4
    assert abs(ratio.mean() - 1.0) < 0.01


def test_bad_input():
    with pytest.raises(ValueError, match="total"):
        energy_problem(4, upper=1.0, total=10.0)
    with pytest.raises(ValueError, match="deg"):
        make_instance("portfolio", deg=0)
    with pytest.raises(ValueError, match="num_data"):
        make_instance("shortest_path", num_data=0)
    with pytest.raises(ValueError, match="name"):
        make_instance("tsp")
    with pytest.raises(ValueError, match="noise_width"):
        shortest_path_gen_data(5, 3, (5, 5), 1, -0.1)
    with pytest.raises(ValueError, match="capacity_ratio"):
        make_instance("knapsack", capacity_ratio=0.0)
    problem = energy_problem(4, upper=1.0, total=2.0)
    with pytest.raises(ValueError, match="w must have shape"):
        objective(problem, jnp.ones((3, 4)), jnp.ones(5))


def test_a_fractional_grid_is_refused_not_truncated():
    # (2.5, 3) was read as a 2 x 3 grid
    with pytest.raises(ValueError, match="grid"):
        shortest_path_problem((2.5, 3))
    with pytest.raises(ValueError, match="grid"):
        shortest_path_gen_data(4, 5, grid=(2.5, 3))
    with pytest.raises(ValueError, match="grid"):
        shortest_path_problem((3,))
    assert shortest_path_problem((np.int64(3), 3)).dim == shortest_path_problem((3, 3)).dim

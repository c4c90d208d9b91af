"""Gen-DFL eq. (9) CVaR regret and PyEPO normalised regret: invariants and closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tailjax.dfl.metrics import cvar_regret, normalized_regret, regret_reference
from tailjax.dfl.problems import make_instance, objective
from tailjax.risk import cvar


@pytest.fixture(scope="module")
def setup():
    inst = make_instance("shortest_path", num_data=6, deg=2, seed=0)
    x = jnp.asarray(inst.features[:4], jnp.float32)
    ref = regret_reference(jax.random.key(0), inst.problem, inst.model, x, 0.2, num_samples=60)
    return inst, x, ref


def test_reference_decision_has_zero_regret_and_is_best(setup):
    inst, x, ref = setup
    assert ref.samples.shape == (4, 60, 40) and ref.decisions.shape == (4, 40)
    assert abs(float(cvar_regret(ref.decisions, ref, inst.problem))) < 1e-4
    # any other feasible decision (the mean-optimal path) has CVaR regret >= 0
    w_mean = jax.vmap(lambda xi: inst.oracle(inst.model.mean(xi)))(x)
    per = cvar_regret(w_mean, ref, inst.problem, per_instance=True)
    assert per.shape == (4,) and bool(jnp.all(per >= -1e-3))


def test_cvar_regret_closed_form(setup):
    inst, x, ref = setup
    w = jax.vmap(lambda xi: inst.oracle(inst.model.mean(xi)))(x)
    expected = []
    for i in range(4):
        f_hat = ref.samples[i] @ w[i]
        f_star = ref.samples[i] @ ref.decisions[i]
        expected.append(100 * cvar(f_hat - f_star, 0.2) / abs(jnp.mean(f_star)))
    np.testing.assert_allclose(float(cvar_regret(w, ref, inst.problem)), float(np.mean(expected)), rtol=1e-5)


def test_normalized_regret_matches_pyepo_definition():
    inst = make_instance("shortest_path", num_data=10, deg=2, seed=1)
    c = jnp.asarray(inst.costs)
    w_opt = jax.vmap(inst.oracle)(c)
    assert abs(float(normalized_regret(w_opt, c, inst.problem, inst.oracle))) < 1e-6
    w_bad = jnp.roll(w_opt, 1, axis=0)
    f = lambda cc, ww: jax.vmap(lambda a, b: objective(inst.problem, a, b))(cc, ww)  # noqa: E731
    expected = jnp.sum(f(c, w_bad) - f(c, w_opt)) / jnp.sum(jnp.abs(f(c, w_opt)))
    np.testing.assert_allclose(float(normalized_regret(w_bad, c, inst.problem, inst.oracle)), float(expected), rtol=1e-6)


def test_bad_input(setup):
    inst, x, ref = setup
    with pytest.raises(ValueError, match="tail_prob"):
        regret_reference(jax.random.key(0), inst.problem, inst.model, x, 0.0)
    with pytest.raises(ValueError, match="num_samples"):
        regret_reference(jax.random.key(0), inst.problem, inst.model, x, 0.5, num_samples=0)
    with pytest.raises(ValueError, match="decisions"):
        cvar_regret(jnp.zeros((3, 40)), ref, inst.problem)

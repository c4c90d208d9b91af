"""Pred-DFL baselines: surrogate closed forms and invariants, losses under jit/vmap, the
optax kernel (cache growth), fit/resume and evaluation decisions."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tailjax.dfl import (
    DFLBatch,
    ProblemInstance,
    baseline_decisions,
    baseline_kernel,
    contrastive_map_loss,
    dfl_plus_loss,
    dfl_plus_sigma,
    fit_baseline,
    kappa_decision,
    listwise_ltr_loss,
    log_mse_loss,
    make_instance,
    make_problem,
    mse_loss,
    nce_loss,
    pairwise_ltr_loss,
    proxy_decisions,
    qptl_loss,
    regret_reference,
    spo_plus_loss,
)
from tailjax.dfl.baselines import contrastive_map, listwise_ltr, nce, pairwise_ltr, spo_plus
from tailjax.dfl.gen_dfl_is import check_num_samples
from tailjax.layers import make_polytope
from tailjax.nn import LinearPredictor, LogLinkPredictor, init_predictor

LOSSES = {"mse": mse_loss, "spo+": spo_plus_loss, "nce": nce_loss, "map": contrastive_map_loss,
          "pairwise": pairwise_ltr_loss, "listwise": listwise_ltr_loss, "dfl": qptl_loss, "dfl+": dfl_plus_loss}
POOL = ("nce", "map", "pairwise", "listwise")


def _options(method, **dfl_plus):
    """Each loss's own options in these tests."""
    if method in POOL:
        return {"pool_size": 8}
    return dfl_plus if method == "dfl+" else {}


def _simplex_problem(d=3):
    # min c^T w over the probability simplex: the oracle picks the cheapest coordinate.
    poly = make_polytope(np.zeros(d, np.float32), np.ones(d, np.float32), np.ones((1, d), np.float32), [1.0])
    problem = make_problem(poly)
    oracle = lambda c: jax.nn.one_hot(jnp.argmin(c), c.shape[0], dtype=c.dtype)  # noqa: E731
    return problem, oracle


def test_spo_plus_closed_form_and_gradient():
    problem, oracle = _simplex_problem()
    c = jnp.asarray([1.0, 2.0, 3.0])
    c_hat = jnp.asarray([2.0, 0.5, 3.0])
    w_star = oracle(c)
    # (2 c_hat - c) = [3, -1, 3]: w_tilde = e_2; SPO+ = 3 - (-1) = 4
    np.testing.assert_allclose(float(spo_plus(c_hat, c, w_star, problem, oracle)), 4.0)
    g = jax.grad(spo_plus)(c_hat, c, w_star, problem, oracle)
    np.testing.assert_allclose(g, 2 * (w_star - oracle(2 * c_hat - c)))
    np.testing.assert_allclose(float(spo_plus(c, c, w_star, problem, oracle)), 0.0)


def test_spo_plus_nonnegative_and_bounds_regret():
    problem, oracle = _simplex_problem(5)
    rng = np.random.default_rng(0)
    for _ in range(50):
        c, c_hat = jnp.asarray(rng.normal(size=5), jnp.float32), jnp.asarray(rng.normal(size=5), jnp.float32)
        w_star = oracle(c)
        loss = float(spo_plus(c_hat, c, w_star, problem, oracle))
        regret = float(c @ oracle(c_hat) - c @ w_star)
        assert loss >= -1e-6 and loss >= regret - 1e-5


def test_contrastive_and_ranking_closed_forms():
    problem, _ = _simplex_problem()
    pool = jnp.eye(3)
    c = jnp.asarray([1.0, 2.0, 3.0])
    c_hat = jnp.asarray([1.5, 1.0, 4.0])
    w_star = pool[0]
    np.testing.assert_allclose(float(nce(c_hat, w_star, pool, problem)), 1.5 - (1.5 + 1.0 + 4.0) / 3, rtol=1e-6)
    np.testing.assert_allclose(float(contrastive_map(c_hat, w_star, pool, problem)), 0.5, rtol=1e-6)
    # true order 0 < 1 < 2; predicted 1 < 0 < 2: pairs (0,1): max(0, .1 + 1.5 - 1) = .6,
    # (0,2): max(0, .1 + 1.5 - 4) = 0, (1,2): max(0, .1 + 1 - 4) = 0 -> mean .2
    np.testing.assert_allclose(float(pairwise_ltr(c_hat, c, pool, problem, 0.1)), 0.2, rtol=1e-6)
    p = jax.nn.softmax(-c)
    expected = -jnp.sum(p * jax.nn.log_softmax(-c_hat))
    np.testing.assert_allclose(float(listwise_ltr(c_hat, c, pool, problem)), float(expected), rtol=1e-6)
    assert float(listwise_ltr(c, c, pool, problem)) <= float(listwise_ltr(c_hat, c, pool, problem))


@pytest.fixture(scope="module")
def sp():
    inst = make_instance("shortest_path", num_data=48, num_features=3, deg=2, seed=0)
    inst = inst._replace(problem=inst.problem._replace(reg=jnp.asarray(0.5, jnp.float32)))
    c = jnp.asarray(inst.costs)
    return inst, jnp.asarray(inst.features, jnp.float32), c, jax.vmap(inst.oracle)(c)


@pytest.mark.parametrize(
    "method", [pytest.param(m, marks=pytest.mark.slow if m == "dfl" else ()) for m in LOSSES]
)
def test_every_loss_is_finite_and_differentiable_under_jit(sp, method):
    inst, x, c, w = sp
    apply_fn = lambda p, f: f @ p["W"] + p["b"]  # noqa: E731
    params = {"W": jnp.full((3, 40), 0.01, jnp.float32), "b": jnp.ones(40, jnp.float32)}
    loss = partial(LOSSES[method], apply_fn=apply_fn, problem=inst.problem, oracle=inst.oracle,
                   **_options(method, num_samples=4, tail_prob=0.5, sigma=0.1))
    batch = DFLBatch(x[:4], c[:4], w[:4], w)
    (value, aux), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params, batch, jax.random.key(0))
    assert np.isfinite(float(value)) and aux is None
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(grads))
    if method in ("mse", "spo+", "dfl"):
        assert float(value) >= -1e-6


def test_log_mse_loss_is_the_squared_error_of_log_costs_and_nan_for_a_non_positive_cost(sp):
    inst, x, c, w = sp
    apply_fn = lambda p, f: jnp.exp(f @ p)  # noqa: E731
    theta = jnp.full((3, 40), 0.1, jnp.float32)
    batch = DFLBatch(x[:4], c[:4], w[:4])
    value, _ = log_mse_loss(theta, batch, jax.random.key(0), apply_fn=apply_fn)
    expected = np.mean((np.asarray(x[:4]) @ np.asarray(theta) - np.log(np.asarray(c[:4]))) ** 2)
    np.testing.assert_allclose(float(value), expected, rtol=1e-5)
    grad = jax.grad(lambda t: log_mse_loss(t, batch, jax.random.key(0), apply_fn=apply_fn)[0])(theta)
    assert bool(jnp.all(jnp.isfinite(grad)))
    zero = batch._replace(costs=batch.costs.at[1, 2].set(0.0))
    assert np.isnan(float(jax.jit(lambda t: log_mse_loss(t, zero, jax.random.key(0), apply_fn=apply_fn)[0])(theta)))


def test_pto_on_log_costs_recovers_a_log_linear_truth(sp):
    """Costs exp(x B) times log-normal noise: PTO on log costs through a log link recovers B."""
    inst, _, _, _ = sp
    x = jax.random.normal(jax.random.key(1), (256, 3))
    coef = jax.random.normal(jax.random.key(2), (3, 40)) * 0.5
    c = jnp.exp(x @ coef + 0.05 * jax.random.normal(jax.random.key(3), (256, 40)))
    predictor = LogLinkPredictor(LinearPredictor(40))
    fit = fit_baseline(jax.random.key(0), predictor, inst, x, c, loss=log_mse_loss, num_steps=600,
                       batch_size=64, learning_rate=0.05)
    kernel = fit.state.params["params"]["inner"]["linear"]
    np.testing.assert_allclose(kernel["kernel"], coef, atol=0.05)
    np.testing.assert_allclose(kernel["bias"], 0.0, atol=0.05)


def test_kernel_cache_growth(sp):
    inst, x, c, w = sp
    apply_fn = lambda p, f: f @ p["W"] + p["b"]  # noqa: E731
    params = {"W": jnp.zeros((3, 40), jnp.float32), "b": jnp.ones(40, jnp.float32)}
    loss = partial(nce_loss, apply_fn=apply_fn, problem=inst.problem, pool_size=4)
    kernel = baseline_kernel(loss, optax.sgd(0.1), apply_fn=apply_fn, oracle=inst.oracle, solve_ratio=1.0)
    state = kernel.init(params, jnp.zeros((6, 40), jnp.float32))
    state, info = jax.jit(kernel.step)(state, jax.random.key(1), DFLBatch(x[:4], c[:4], w[:4]))
    assert int(state.cache_ptr) == 4 and int(state.step) == 1 and np.isfinite(float(info.loss))
    np.testing.assert_allclose(jnp.sum(state.cache[:4], axis=1), 8.0)  # 8-arc paths added
    np.testing.assert_allclose(state.cache[4:], 0.0)


def test_fit_resume_and_decisions(sp, tmp_path):
    inst, x, c, w = sp
    predictor = LinearPredictor(40)
    kw = dict(loss=spo_plus_loss, num_steps=6, batch_size=16, learning_rate=0.05, solutions=w)
    full = fit_baseline(jax.random.key(0), predictor, inst, x, c, **kw)
    ck = tmp_path / "ck.ckpt"
    fit_baseline(jax.random.key(0), predictor, inst, x, c, **{**kw, "num_steps": 3}, checkpoint_path=ck)
    resumed = fit_baseline(jax.random.key(0), predictor, inst, x, c, **kw, checkpoint_path=ck)
    for a, b in zip(jax.tree_util.tree_leaves(full.state.params), jax.tree_util.tree_leaves(resumed.state.params)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert full.history["loss"].shape == (6,)
    dec = baseline_decisions(predictor, full.state.params, x[:5], inst)
    np.testing.assert_allclose(jnp.sum(dec, axis=1), 8.0)
    # Pred-DFL+ decisions: CVaR decisions over Gaussian samples around the prediction
    sampled = baseline_decisions(predictor, full.state.params, x[:3], inst, sigma=0.5, tail_prob=0.5,
                                 key=jax.random.key(1), num_samples=8)
    assert sampled.shape == (3, 40) and bool(jnp.all(jnp.isfinite(sampled)))


@pytest.mark.slow
@pytest.mark.parametrize("method", list(LOSSES))
def test_training_reduces_regret(method):
    from tailjax.dfl import normalized_regret

    inst = make_instance("shortest_path", num_data=300, num_features=5, deg=4, seed=0)
    inst = inst._replace(problem=inst.problem._replace(reg=jnp.asarray(0.5, jnp.float32)))
    x, c = inst.features, inst.costs
    predictor = LinearPredictor(40)
    sigma = dfl_plus_sigma(c[:200])
    options = {"pool_size": 32} if method in POOL else _options(method, num_samples=8, sigma=sigma)
    ratio = 0.1 if method in POOL else 0.0
    fitted = fit_baseline(jax.random.key(0), predictor, inst, x[:200], c[:200], loss=LOSSES[method],
                          num_steps=60, learning_rate=0.02, solve_ratio=ratio, **options)
    untrained = fit_baseline(jax.random.key(0), predictor, inst, x[:200], c[:200], loss=LOSSES[method],
                             num_steps=6, learning_rate=0.0, **options)
    decide_sigma = sigma if method == "dfl+" else None
    r_fit = normalized_regret(baseline_decisions(predictor, fitted.state.params, x[200:], inst, sigma=decide_sigma),
                              c[200:], inst.problem, inst.oracle)
    r_0 = normalized_regret(baseline_decisions(predictor, untrained.state.params, x[200:], inst, sigma=decide_sigma),
                            c[200:], inst.problem, inst.oracle)
    assert float(r_fit) < float(r_0)


def test_bad_input(sp):
    inst, x, c, w = sp
    batch = DFLBatch(x[:2], c[:2], w[:2])
    identity = lambda p, f: jnp.zeros((f.shape[0], 40), f.dtype)  # noqa: E731
    with pytest.raises(ValueError, match="tail_prob"):
        dfl_plus_loss(None, batch, jax.random.key(0), apply_fn=identity, problem=inst.problem, sigma=0.1,
                      tail_prob=1.5)
    with pytest.raises(ValueError, match="sigma"):
        dfl_plus_loss(None, batch, jax.random.key(0), apply_fn=identity, problem=inst.problem, sigma=-1.0)
    with pytest.raises(ValueError, match="cache"):
        nce_loss(None, batch, jax.random.key(0), apply_fn=identity, problem=inst.problem)
    with pytest.raises(ValueError, match="pool_size"):
        nce_loss(None, batch._replace(cache=w), jax.random.key(0), apply_fn=identity, problem=inst.problem,
                 pool_size=0)
    with pytest.raises(ValueError, match="temperature"):
        listwise_ltr_loss(None, batch._replace(cache=w), jax.random.key(0), apply_fn=identity,
                          problem=inst.problem, temperature=0.0)
    with pytest.raises(ValueError, match="solve_ratio"):
        baseline_kernel(lambda *a: (0.0, None), optax.sgd(0.1), solve_ratio=2.0)
    with pytest.raises(ValueError, match="cache"):
        baseline_kernel(lambda *a: (0.0, None), optax.sgd(0.1)).init({}, jnp.zeros((0, 40)))
    with pytest.raises(ValueError, match="batch_size"):
        fit_baseline(jax.random.key(0), LinearPredictor(40), inst, x, c, loss=mse_loss, batch_size=1000)
    with pytest.raises(ValueError, match="costs"):
        dfl_plus_sigma(c[0])


def test_early_stopping_selects_the_best_validation_regret(sp):
    from tailjax.dfl import normalized_regret

    inst, x, c, w = sp
    res = fit_baseline(jax.random.key(0), LinearPredictor(40), inst, x[:24], c[:24], loss=mse_loss,
                       num_steps=60, batch_size=8, learning_rate=0.05, validation=(x[24:], c[24:]),
                       eval_every=3, patience=2)
    steps, scores = zip(*res.evaluations)
    assert steps[0] == 0 and len(steps) <= 21  # the initial state is a candidate
    assert res.best_step in steps and min(scores) == scores[steps.index(res.best_step)]
    if len(steps) < 21:  # stopped early: patience checks after the best one
        assert steps[-1] - res.best_step == 2 * 3
    decisions = baseline_decisions(LinearPredictor(40), res.state.params, x[24:], inst)
    chosen = normalized_regret(decisions, c[24:], inst.problem, inst.oracle)
    np.testing.assert_allclose(float(chosen), min(scores), rtol=1e-5)
    with pytest.raises(ValueError, match="validation"):
        fit_baseline(jax.random.key(0), LinearPredictor(40), inst, x[:24], c[:24], loss=mse_loss,
                     num_steps=4, batch_size=8, validation=(x[24:], c[24:27]))


def test_nnx_predictor_trains_through_spo_plus(sp):
    from flax import nnx

    from tailjax.nn import from_nnx, to_nnx
    from tailjax.training import fit, minibatches

    inst, x, c, w = sp

    class Head(nnx.Module):
        def __init__(self, rngs):
            self.dense = nnx.Linear(3, 40, rngs=rngs)

        def __call__(self, features):
            return self.dense(features)

    model = Head(nnx.Rngs(0))
    apply_fn, params = from_nnx(model)
    loss = partial(spo_plus_loss, apply_fn=apply_fn, problem=inst.problem, oracle=inst.oracle)
    kernel = baseline_kernel(loss, optax.adam(0.05))
    batches = minibatches(jax.random.key(1), DFLBatch(x, c, w), 16)
    result = fit(kernel, kernel.init(params, w), jax.random.key(2), 30, batches=batches, progress=False)
    first, last = (float(loss(p, DFLBatch(x, c, w), jax.random.key(0))[0]) for p in (params, result.state.params))
    assert last < 0.8 * first
    trained = to_nnx(model, result.state.params)
    np.testing.assert_allclose(trained(x[:2]), apply_fn(result.state.params, x[:2]), rtol=1e-6)


def test_nan_or_empty_data_is_refused(sp):
    from tailjax.dfl import fit_nll
    from tailjax.nn import ConditionalFlow

    inst, x, c, w = sp
    bad = c.at[0, 0].set(jnp.nan)
    with pytest.raises(ValueError, match="features and costs"):
        fit_baseline(jax.random.key(0), LinearPredictor(40), inst, x, bad, loss=mse_loss, num_steps=1)
    with pytest.raises(ValueError, match="validation"):
        fit_baseline(jax.random.key(0), LinearPredictor(40), inst, x, c, loss=mse_loss, num_steps=1,
                     validation=(x[:4], bad[:4]))
    flow = ConditionalFlow(40, 3, num_layers=1, hidden_sizes=(4,))
    with pytest.raises(ValueError, match="finite"):
        fit_nll(jax.random.key(0), flow, x, bad, num_steps=1)
    with pytest.raises(ValueError, match="n >= 1"):
        fit_nll(jax.random.key(0), flow, x[:0], c[:0], num_steps=1)


class _NormalCosts:
    """A true model c | x ~ N(1, I) on the 3-simplex problem."""

    def sample(self, key, x, num_samples):
        return 1.0 + jax.random.normal(key, (num_samples, 3))


def _counts_setup():
    problem, oracle = _simplex_problem()
    x = jnp.ones((4, 2))
    batch = DFLBatch(x, jnp.ones((4, 3)), jnp.eye(3)[jnp.zeros(4, int)], jnp.eye(3))
    identity = lambda p, f: jnp.ones((f.shape[0], 3), f.dtype)  # noqa: E731
    return problem, oracle, x, batch, identity


def _regret_reference(**kwargs):
    problem, _, x, _, _ = _counts_setup()
    return regret_reference(jax.random.key(0), problem, _NormalCosts(), x, 0.5, **{"num_samples": 8, **kwargs})


def _kappa_decision(**kwargs):
    problem, *_ = _counts_setup()
    return kappa_decision(problem, jnp.ones(3), jnp.eye(3), 1.0, **kwargs)


def _pool_loss(pool_size):
    problem, _, _, batch, identity = _counts_setup()
    return nce_loss(None, batch, jax.random.key(0), apply_fn=identity, problem=problem, pool_size=pool_size)


def _dfl_plus_loss(num_samples):
    problem, _, _, batch, identity = _counts_setup()
    return dfl_plus_loss(None, batch, jax.random.key(0), apply_fn=identity, problem=problem, sigma=0.1,
                         num_samples=num_samples)


def _baseline_decisions(num_samples):
    problem, oracle, x, _, _ = _counts_setup()
    predictor = LinearPredictor(3)
    params = init_predictor(predictor, jax.random.key(0), 2)
    instance = ProblemInstance("simplex", problem, None, oracle, None, None)
    return baseline_decisions(predictor, params, x, instance, sigma=0.1, num_samples=num_samples)


def _proxy_decisions(batch_size):
    problem, _, x, _, _ = _counts_setup()
    return proxy_decisions(jax.random.key(0), _NormalCosts(), problem, x, 0.5, 4, batch_size=batch_size)


# each was truncated (2.5 -> 2), failed inside JAX with a TypeError, or (inf) overflowed
@pytest.mark.parametrize("name,call", [
    pytest.param("num_samples", lambda: _regret_reference(num_samples=2.5), id="regret_reference-num_samples"),
    pytest.param("eval_samples", lambda: _regret_reference(eval_samples=2.5), id="regret_reference-eval_samples"),
    pytest.param("chunk_size", lambda: _regret_reference(chunk_size=2.5), id="regret_reference-chunk_size"),
    pytest.param("iterations", lambda: _regret_reference(iterations=20.5), id="regret_reference-iterations"),
    pytest.param("root_steps", lambda: _kappa_decision(root_steps=2.5), id="kappa_decision-root_steps"),
    pytest.param("iterations", lambda: _kappa_decision(iterations=20.5), id="kappa_decision-iterations"),
    pytest.param("pool_size", lambda: _pool_loss(2.5), id="nce_loss-pool_size"),
    pytest.param("num_samples", lambda: _dfl_plus_loss(2.5), id="dfl_plus_loss-num_samples"),
    pytest.param("num_samples", lambda: _baseline_decisions(2.5), id="baseline_decisions-num_samples"),
    pytest.param("batch_size", lambda: _proxy_decisions(2.5), id="proxy_decisions-batch_size"),
    pytest.param("num_samples", lambda: check_num_samples(float("inf")), id="check_num_samples-inf"),
])
def test_fractional_counts_are_refused_not_truncated(name, call):
    with pytest.raises(ValueError, match=rf"^{name} must be an integer"):
        call()


def test_numpy_integer_counts_still_work():
    got, want = _pool_loss(np.int64(2)), _pool_loss(2)
    assert float(got[0]) == float(want[0])
    assert check_num_samples(np.int64(4)) == 4 and check_num_samples(4.0) == 4

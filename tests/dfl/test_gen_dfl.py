"""Gen-DFL loss, kernel and fit: gradients through the decision layer against finite
differences, the Gaussian closed-form comparison with the two-stage baseline, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.scipy.stats import norm

from tailjax.dfl import (
    GenDFLConfig,
    Proxy,
    decision,
    fit_gen_dfl,
    fit_proxy,
    gen_dfl,
    gen_dfl_decisions,
    gen_dfl_loss,
    gen_dfl_mean_regret,
    gen_dfl_regret,
    init_flow,
    make_problem,
    objective,
    proxy_decisions,
    sample_decision,
)
from tailjax.dfl.gen_dfl import check_config
from tailjax.layers import make_polytope
from tailjax.nn import ConditionalFlow


def _simplex_task(d, dtype=jnp.float32, quadratic=None):
    poly = make_polytope(jnp.zeros(d, dtype), jnp.ones(d, dtype), eq_matrix=jnp.ones((1, d), dtype),
                         eq_rhs=jnp.ones(1, dtype))
    return make_problem(poly, sign=-1.0, quadratic=quadratic)


def _perturbed_params(flow, key, scale=0.2):
    params = jax.jit(flow.init)(key, jnp.zeros(flow.event_dim, flow.dtype), jnp.zeros(flow.context_dim, flow.dtype))
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.fold_in(key, 1), len(leaves))
    return jax.tree_util.tree_unflatten(
        tree, [l + (scale * jax.random.normal(k, l.shape)).astype(l.dtype) for l, k in zip(leaves, keys)]
    )


def test_regret_gradient_matches_finite_differences(x64):
    d, p = 3, 2
    problem = _simplex_task(d, jnp.float64, quadratic=0.5 * jnp.eye(d, dtype=jnp.float64))
    flow = ConditionalFlow(d, p, num_layers=2, hidden_sizes=(8,), event_loc=(0.1, 0.05, 0.08),
                           event_scale=(0.1, 0.05, 0.2), dtype=jnp.float64)
    params = _perturbed_params(flow, jax.random.key(0))
    x = jnp.array([0.3, -0.7])
    w_q = jnp.array([0.2, 0.5, 0.3])
    proxy = Proxy(flow, params)
    config = GenDFLConfig(num_samples=12, proxy_samples=40, tail_prob=0.25)
    key = jax.random.key(3)

    def regret(prm):
        return gen_dfl_regret(prm, key, x, w_q, flow=flow, problem=problem, proxy=proxy, config=config)

    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(4), len(leaves))
    direction = jax.tree_util.tree_unflatten(tree, [jax.random.normal(k, l.shape, l.dtype) for l, k in zip(leaves, keys)])
    grads = jax.jit(jax.grad(regret))(params)
    analytic = sum(jnp.vdot(g, v) for g, v in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(direction)))
    eps = 1e-5
    shift = lambda s: jax.tree_util.tree_map(lambda a, v: a + s * v, params, direction)
    f = jax.jit(regret)
    numeric = (f(shift(eps)) - f(shift(-eps))) / (2 * eps)
    assert abs(float(analytic)) > 1e-4
    np.testing.assert_allclose(analytic, numeric, rtol=2e-3, atol=1e-6)


def _gaussian_truth(x):
    """c | x ~ N(m(x), S): asset 1 pays more on average but is far riskier."""
    m = jnp.stack([0.10 + 0.05 * x[:, 0], jnp.full(x.shape[0], 0.06)], -1)
    sd = jnp.array([0.15, 0.02])
    return m, sd


def _closed_form_cvar_regret(w_hat, x, tail_prob):
    """Eq. (9) exactly: f = -c^T w is Gaussian, CVaR = mean + sd phi(q)/tail_prob."""
    m, sd = _gaussian_truth(x)
    k = norm.pdf(norm.ppf(1 - tail_prob)) / tail_prob
    t = jnp.linspace(0.0, 1.0, 2001)
    grid = jnp.stack([t, 1 - t], -1)  # the feasible segment w1 + w2 = 1
    cvar_grid = -m @ grid.T + k * jnp.sqrt((grid**2) @ (sd**2))  # (n, 2001)
    w_star = grid[jnp.argmin(cvar_grid, axis=1)]
    delta = w_hat - w_star
    excess = -jnp.sum(m * delta, -1) + k * jnp.sqrt(jnp.sum((delta * sd) ** 2, -1))
    return jnp.mean(excess / jnp.abs(jnp.sum(m * w_star, -1))) * 100


@pytest.mark.slow
def test_generate_then_optimize_beats_two_stage_on_gaussian_closed_form():
    # What this shows: the conditional flow's CVaR decisions beat PTO's point decisions.
    # It does not show that the regret term helps (with regret_weight = 0 it passes too);
    # test_regret_term_lowers_the_regret_it_trains_on covers that term.
    tail_prob = 0.2
    n = 256
    kx, ke = jax.random.split(jax.random.key(0))
    x = jax.random.uniform(kx, (n, 1), minval=-1.0, maxval=1.0)
    m, sd = _gaussian_truth(x)
    c = m + sd * jax.random.normal(ke, (n, 2))
    problem = _simplex_task(2)
    # two-stage baseline (PTO): least-squares linear predictor, then the point decision
    design = jnp.concatenate([x, jnp.ones((n, 1))], -1)
    coef = jnp.linalg.lstsq(design, c)[0]
    x_test = jnp.linspace(-1.0, 1.0, 32)[:, None]
    pred = jnp.concatenate([x_test, jnp.ones((32, 1))], -1) @ coef
    w_pto = jax.vmap(lambda ci: decision(problem, ci[None], 1.0))(pred)
    pto_regret = _closed_form_cvar_regret(w_pto, x_test, tail_prob)

    proxy = fit_proxy(jax.random.key(1), x, c, num_steps=300, batch_size=64, hidden_sizes=(16,), num_layers=2,
                      learning_rate=3e-3)
    flow = ConditionalFlow(2, 1, hidden_sizes=(16,), num_layers=2)
    config = GenDFLConfig(num_samples=32, proxy_samples=32, tail_prob=tail_prob)
    result = fit_gen_dfl(jax.random.key(2), flow, problem, proxy, x, c, config=config,
                         num_steps=120, batch_size=32, learning_rate=3e-3)
    w_gen = jax.jit(lambda k: gen_dfl_decisions(k, flow, result.state.params, problem, x_test, tail_prob, 64))(
        jax.random.key(3))
    gen_regret = _closed_form_cvar_regret(w_gen, x_test, tail_prob)
    assert np.isfinite(result.history["loss"]).all()
    assert float(gen_regret) < 0.5 * float(pto_regret), (float(gen_regret), float(pto_regret))


def test_regret_term_lowers_the_regret_it_trains_on():
    # Regret alone (nll_weight = 0) must lower the eq. (9) regret on its training data,
    # evaluated with a fixed key; a sign error or a lost gradient of the decision layer
    # leaves it flat or raises it.
    problem, x, c, flow, params, proxy, config = _small_setup()
    config = config._replace(nll_weight=0.0, regret_weight=1.0, num_samples=8)
    w_q = jnp.full((x.shape[0], 2), 0.5)
    regret = jax.jit(lambda p: gen_dfl_mean_regret(p, jax.random.key(11), x, w_q, flow=flow, problem=problem,
                                                   proxy=proxy, config=config))
    before = float(regret(params))
    result = fit_gen_dfl(jax.random.key(5), flow, problem, proxy, x, c, config=config, num_steps=60,
                         batch_size=16, learning_rate=1e-2, params=params, w_q=w_q)
    after = float(regret(result.state.params))
    assert after < 0.7 * before, (before, after)


def _small_setup():
    d, p, n = 2, 1, 16
    problem = _simplex_task(d)
    x = jax.random.normal(jax.random.key(0), (n, p))
    c = jnp.concatenate([0.1 + 0.05 * x, 0.05 + 0.0 * x], -1)
    flow = ConditionalFlow(d, p, hidden_sizes=(4,), num_layers=1)
    params = init_flow(jax.random.key(1), flow, x, c + 0.01 * jax.random.normal(jax.random.key(2), c.shape))
    config = GenDFLConfig(num_samples=4, proxy_samples=8, tail_prob=0.5)
    return problem, x, c, flow, params, Proxy(flow, params), config


def test_kernel_step_and_decisions_under_jit_and_vmap():
    problem, x, c, flow, params, proxy, config = _small_setup()

    @jax.jit
    def decisions(key):
        w_q = proxy_decisions(key, proxy, problem, x, 0.5, 8, batch_size=None)
        batched = gen_dfl_decisions(key, flow, params, problem, x[:3], 0.3, 6)
        keys = jax.random.split(key, 3)
        single = jax.vmap(lambda k, xi: sample_decision(k, flow, params, problem, xi, 0.3, 6))(keys, x[:3])
        return w_q, batched, single

    w_q, batched, single = decisions(jax.random.key(2))
    assert w_q.shape == (x.shape[0], 2)
    np.testing.assert_allclose(jnp.sum(w_q, -1), 1.0, atol=1e-4)
    np.testing.assert_allclose(batched, single, atol=1e-5)  # lax.map over rows == vmap
    kernel = gen_dfl(flow, problem, proxy, config, optax.adam(1e-3))
    state, info = jax.jit(kernel.step)(kernel.init(params), jax.random.key(3), (x[:4], c[:4], w_q[:4]))
    np.testing.assert_allclose(
        info.loss, config.regret_weight * info.aux.regret + config.nll_weight * info.aux.nll, rtol=1e-5)
    assert int(state.step) == 1 and np.isfinite(float(info.grad_norm)) and float(info.grad_norm) > 0
    # the regret term is gen_dfl_mean_regret with the step's key
    mean_regret = jax.jit(lambda p: gen_dfl_mean_regret(p, jax.random.key(3), x[:4], w_q[:4], flow=flow,
                                                         problem=problem, proxy=proxy, config=config))
    np.testing.assert_allclose(info.aux.regret, mean_regret(params), rtol=1e-5)


@pytest.mark.slow
def test_fit_evaluates_and_resumes(tmp_path):
    problem, x, c, flow, params, proxy, config = _small_setup()
    w_q = jnp.full((x.shape[0], 2), 0.5)
    eval_fn = lambda s: jnp.sum(s.step)
    kw = dict(config=config, num_steps=4, batch_size=4, w_q=w_q, params=params)
    full = fit_gen_dfl(jax.random.key(6), flow, problem, proxy, x, c, eval_fn=eval_fn, eval_every=2, **kw)
    assert [e[0] for e in full.evaluations] == [2, 4]
    path = tmp_path / "gen.ckpt"
    fit_gen_dfl(jax.random.key(6), flow, problem, proxy, x, c, checkpoint_path=path, checkpoint_every=1,
                **{**kw, "num_steps": 2})
    resumed = fit_gen_dfl(jax.random.key(6), flow, problem, proxy, x, c, checkpoint_path=path, **kw)
    for a, b in zip(jax.tree_util.tree_leaves(full.state.params), jax.tree_util.tree_leaves(resumed.state.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # loss = regret_weight * regret + nll_weight * nll, as the loss function computes it
    loss, (regret, nll) = jax.jit(lambda p: gen_dfl_loss(p, (x[:4], c[:4], w_q[:4]), jax.random.key(3), flow=flow,
                                                         problem=problem, proxy=proxy, config=config))(params)
    np.testing.assert_allclose(loss, config.regret_weight * regret + config.nll_weight * nll, rtol=1e-5)
    assert set(full.history) == {"loss", "grad_norm", "aux.regret", "aux.nll"}


@pytest.mark.slow
def test_fit_validation_selects_and_weight_sweeps_reuse_one_step():
    from tailjax.dfl.gen_dfl_fit import _sweep_kernel

    problem, x, c, flow, params, proxy, config = _small_setup()
    kw = dict(num_steps=4, batch_size=4, w_q=jnp.full((12, 2), 0.5), params=params)
    before = _sweep_kernel.cache_info()
    result = fit_gen_dfl(jax.random.key(6), flow, problem, proxy, x[:12], c[:12], config=config,
                         validation=x[12:], eval_every=2, **kw)
    assert [s for s, _ in result.evaluations] == [0, 2, 4]
    scores = [v for _, v in result.evaluations]
    assert result.best_step == [0, 2, 4][int(np.argmin(scores))]
    # other weights and learning rate: the same step function (one compilation)
    swept = fit_gen_dfl(jax.random.key(6), flow, problem, proxy, x[:12], c[:12], learning_rate=1e-2,
                        config=config._replace(regret_weight=1.0, nll_weight=0.5), **kw)
    after = _sweep_kernel.cache_info()
    assert after.misses - before.misses <= 1 and after.hits - before.hits >= 1
    np.testing.assert_allclose(swept.history["loss"],
                               1.0 * swept.history["aux.regret"] + 0.5 * swept.history["aux.nll"], rtol=1e-5)
    with pytest.raises(ValueError, match="validation"):
        fit_gen_dfl(jax.random.key(6), flow, problem, proxy, x[:12], c[:12], config=config,
                    validation=jnp.zeros((2, 3)), **kw)


def test_bad_input_raises():
    problem = _simplex_task(2)
    flow = ConditionalFlow(2, 1, hidden_sizes=(4,), num_layers=1)
    params = jax.jit(flow.init)(jax.random.key(0), jnp.zeros(2), jnp.zeros(1))
    x = jnp.zeros((4, 1))
    with pytest.raises(ValueError, match="num_samples"):
        check_config(GenDFLConfig(num_samples=0))
    with pytest.raises(ValueError, match="num_samples"):
        sample_decision(jax.random.key(0), flow, params, problem, x[0], 0.5, 0)
    with pytest.raises(ValueError, match="tail_prob"):
        check_config(GenDFLConfig(tail_prob=0.0))
    with pytest.raises(ValueError, match="tail_prob"):
        check_config(GenDFLConfig(tail_prob=1.5))
    with pytest.raises(ValueError, match="tail_prob"):
        gen_dfl_decisions(jax.random.key(0), flow, params, problem, x, 1.2, 4)
    with pytest.raises(ValueError, match="context_dim"):
        gen_dfl_decisions(jax.random.key(0), flow, params, problem, jnp.zeros((4, 3)), 0.5, 4)
    with pytest.raises(ValueError, match="regret_weight"):
        check_config(GenDFLConfig(regret_weight=-1.0))
    with pytest.raises(ValueError, match="nll_weight"):
        gen_dfl(flow, problem, Proxy(flow, params), GenDFLConfig(nll_weight=-1.0), optax.adam(1e-3))
    with pytest.raises(ValueError, match="x and c"):
        fit_gen_dfl(jax.random.key(0), flow, problem, Proxy(flow, params), x, jnp.zeros((3, 2)))
    # task_cost matches its definition
    w = jnp.array([0.25, 0.75])
    np.testing.assert_allclose(objective(problem, jnp.array([1.0, 2.0]), w), -(0.25 + 1.5), rtol=1e-6)


def test_normalized_loss_divides_the_regret_by_the_mean_proxy_cost():
    problem, x, c, flow, params, proxy, config = _small_setup()
    w_q = jnp.full((4, 2), 0.5)
    batch, key = (x[:4], c[:4], w_q), jax.random.key(3)
    loss = jax.jit(lambda p, cfg_norm: gen_dfl_loss(p, batch, key, flow=flow, problem=problem, proxy=proxy,
                                                    config=config._replace(normalize=cfg_norm, nll_weight=0.0)),
                   static_argnums=1)
    raw, (regret, _) = loss(params, False)
    scaled, (regret_n, _) = loss(params, True)
    # the same keys draw the same q-samples: the scale is mean_x |mean_k f(c_k, w_q)|
    keys = jax.random.split(key, 4)
    scale = jnp.mean(jnp.stack([
        jnp.abs(jnp.mean(objective(problem, proxy.sample(jax.random.split(k)[1], xi, config.proxy_samples), wi)))
        for k, xi, wi in zip(keys, x[:4], w_q)]))
    np.testing.assert_allclose(regret_n, regret / scale, rtol=1e-4)
    np.testing.assert_allclose(scaled, config.regret_weight * regret_n, rtol=1e-5)


class _GaussModel:
    """c | x ~ N(x[0] * mu, 0.3^2 I): a tiny true model with ``sample(key, x, K)``."""

    mu = jnp.asarray([0.3, 0.2, 0.1])

    def sample(self, key, x, num_samples):
        return x[0] * self.mu + 0.3 * jax.random.normal(key, (num_samples, 3), x.dtype)


def test_cvar_gap_form_of_the_evaluation_regret():
    """``cvar_regret(form="difference_of_cvars")``: closed form, zero at w*, >= 0, and at most
    eq. (9) (CVaR is subadditive: CVaR(A) - CVaR(B) <= CVaR(A - B)); under jit."""
    from tailjax.dfl import cvar_regret, regret_reference
    from tailjax.risk import cvar

    problem = _simplex_task(3)
    x = jnp.asarray([[1.0], [2.0]], jnp.float32)
    ref = regret_reference(jax.random.key(0), problem, _GaussModel(), x, 0.2, num_samples=40)
    gap = jax.jit(lambda w, r, p: cvar_regret(w, r, p, per_instance=True, form="difference_of_cvars"))
    assert float(jnp.max(jnp.abs(gap(ref.decisions, ref, problem)))) < 1e-3
    w = jnp.asarray([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]], jnp.float32)
    per = gap(w, ref, problem)
    f = lambda i, wi: objective(problem, ref.samples[i], wi)  # noqa: E731
    expected = [100 * (cvar(f(i, w[i]), 0.2) - cvar(f(i, ref.decisions[i]), 0.2))
                / abs(jnp.mean(f(i, ref.decisions[i]))) for i in range(2)]
    np.testing.assert_allclose(np.asarray(per), np.asarray(expected), rtol=1e-4, atol=1e-3)
    assert bool(jnp.all(per >= -1e-3)) and float(jnp.max(per)) > 1.0
    assert bool(jnp.all(per <= cvar_regret(w, ref, problem, per_instance=True) + 1e-3))
    with pytest.raises(ValueError, match="form"):
        cvar_regret(w, ref, problem, form="gap")


@pytest.mark.parametrize("n, batch_size", [(10, 4), (8, 4), (3, 4), (10, None)])
def test_map_rows_matches_vmap(n, batch_size):
    from tailjax.dfl.gen_dfl import _map_rows

    xs = (jnp.arange(n * 2.0).reshape(n, 2), jnp.arange(n * 1.0))
    fn = lambda args: jnp.sum(args[0]) * args[1]
    out = _map_rows(fn, xs, batch_size)
    assert out.shape == (n,)
    np.testing.assert_allclose(out, jax.vmap(fn)(xs))

"""ConditionalFlow: change of variables against jax.jacobian, sample/log_prob consistency,
normalisation, reparameterised gradients, and recovery of a known conditional Gaussian."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tailjax.nn.conditional_flow import ConditionalFlow, alternating_mask, standardise_params
from tailjax.nn.ddpm import ConvNoiseNet, ddpm_sample, dm_loss, make_schedule
from tailjax.nn.predictors import LinearPredictor, MLPPredictor, init_predictor
from tailjax.nn.spline_coupling import rq_spline, spline_param_count

COUPLINGS = ["affine", "spline"]


def _perturbed(flow, key, scale=0.3):
    """Parameters of ``flow`` moved away from the identity initialisation."""
    d, p = flow.event_dim, flow.context_dim
    params = jax.jit(flow.init)(key, jnp.zeros(d, flow.dtype), jnp.zeros(p, flow.dtype))
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.fold_in(key, 1), len(leaves))
    noisy = [l + (scale * jax.random.normal(k, l.shape)).astype(l.dtype) for l, k in zip(leaves, keys)]
    return jax.tree_util.tree_unflatten(tree, noisy)


@pytest.mark.parametrize("coupling", COUPLINGS)
def test_log_det_matches_jacobian(coupling, x64):
    flow = ConditionalFlow(3, 2, num_layers=3, hidden_sizes=(8,), coupling=coupling,
                           spline_bound=3.0, event_loc=(1.0, -2.0, 0.5),
                           event_scale=(0.5, 2.0, 1.5), dtype=jnp.float64)
    params = _perturbed(flow, jax.random.key(0))
    x = jnp.array([0.4, -1.1])
    fwd = lambda z: flow.apply(params, z, x, method=ConditionalFlow.forward_and_log_det)
    inv = lambda c: flow.apply(params, c, x, method=ConditionalFlow.inverse_and_log_det)

    @jax.jit
    def check(z):
        c, log_det = jax.vmap(fwd)(z)
        jac = jax.vmap(jax.jacobian(lambda zz: fwd(zz)[0]))(z)
        back, inv_log_det = inv(c)
        return log_det, jnp.linalg.slogdet(jac)[1], back, inv_log_det

    z = jax.random.normal(jax.random.key(1), (4, 3), jnp.float64) * 1.5
    log_det, jac_log_det, back, inv_log_det = check(z)
    np.testing.assert_allclose(log_det, jac_log_det, rtol=1e-9, atol=1e-9)
    # inverse undoes forward, and its log-det is the negative
    np.testing.assert_allclose(back, z, atol=1e-8)
    np.testing.assert_allclose(inv_log_det, -log_det, atol=1e-8)


@pytest.mark.parametrize("coupling", COUPLINGS)
def test_log_prob_of_samples_is_consistent(coupling):
    flow = ConditionalFlow(4, 3, num_layers=4, hidden_sizes=(16,), coupling=coupling)
    params = _perturbed(flow, jax.random.key(2), scale=0.2)
    x = jax.random.normal(jax.random.key(3), (5, 3))
    sample_lp = jax.jit(lambda k, x: flow.apply(params, k, x, 7, method=ConditionalFlow.sample_and_log_prob))
    c, lp = sample_lp(jax.random.key(4), x)
    assert c.shape == (5, 7, 4) and lp.shape == (5, 7)
    lp2 = jax.jit(lambda c, x: flow.apply(params, c, x, method=ConditionalFlow.log_prob))(c, x[:, None, :])
    np.testing.assert_allclose(lp, lp2, rtol=2e-3, atol=2e-3)  # float32 spline inverse
    only = jax.jit(lambda k, x: flow.apply(params, k, x, 7, method=ConditionalFlow.sample))
    np.testing.assert_allclose(only(jax.random.key(4), x), c, rtol=1e-5, atol=1e-5)


def test_log_prob_vmap_equals_batched():
    flow = ConditionalFlow(3, 2, hidden_sizes=(8,))
    params = _perturbed(flow, jax.random.key(5))
    c = jax.random.normal(jax.random.key(6), (6, 3))
    x = jax.random.normal(jax.random.key(7), (6, 2))
    log_prob = lambda c, x: flow.apply(params, c, x, method=ConditionalFlow.log_prob)
    np.testing.assert_allclose(jax.vmap(log_prob)(c, x), jax.jit(log_prob)(c, x), rtol=1e-5, atol=1e-5)
    # one context broadcast against many costs
    np.testing.assert_allclose(log_prob(c, x[0]), log_prob(c, jnp.tile(x[:1], (6, 1))), rtol=1e-6)


@pytest.mark.parametrize("coupling", COUPLINGS)
def test_density_integrates_to_one_in_1d(coupling, x64):
    flow = ConditionalFlow(1, 1, num_layers=2, hidden_sizes=(8,), coupling=coupling,
                           spline_bound=2.0, dtype=jnp.float64)
    params = _perturbed(flow, jax.random.key(8), scale=0.5)
    grid = jnp.linspace(-25.0, 25.0, 50001, dtype=jnp.float64)[:, None]
    lp = jax.jit(lambda c: flow.apply(params, c, jnp.array([0.7]), method=ConditionalFlow.log_prob))(grid)
    mass = jnp.trapezoid(jnp.exp(lp), grid[:, 0])
    np.testing.assert_allclose(mass, 1.0, atol=5e-4)  # trapezoid error at kinks


def test_fresh_flow_is_standardised_gaussian():
    loc, scale = (1.0, -3.0), (2.0, 0.5)
    flow = ConditionalFlow(2, 1, event_loc=loc, event_scale=scale)
    params = jax.jit(flow.init)(jax.random.key(0), jnp.zeros(2), jnp.zeros(1))
    c = jnp.array([[0.0, 0.0], [2.0, -2.0]])
    lp = jax.jit(flow.apply, static_argnames="method")(params, c, jnp.zeros((2, 1)), method=ConditionalFlow.log_prob)
    z = (c - jnp.array(loc)) / jnp.array(scale)
    expected = -0.5 * jnp.sum(z**2, -1) - math.log(2 * math.pi) - math.log(2.0 * 0.5)
    np.testing.assert_allclose(lp, expected, rtol=1e-6)


def test_standardise_params_sets_data_moments():
    c = jnp.array([[1.0, 5.0], [3.0, 5.0], [5.0, 5.0]])
    flow = ConditionalFlow(2, 1)
    params = standardise_params(jax.jit(flow.init)(jax.random.key(0), c[0], jnp.zeros(1)), c)
    samples = jax.jit(lambda p: flow.apply(p, jax.random.key(1), jnp.zeros(1), 20000, method=ConditionalFlow.sample))(params)
    np.testing.assert_allclose(samples.mean(0), [3.0, 5.0], atol=0.05)
    np.testing.assert_allclose(samples.std(0), [np.std([1.0, 3.0, 5.0]), 1.0], rtol=0.03)  # constant column: scale 1
    with pytest.raises(ValueError, match="columns"):
        standardise_params(params, jnp.zeros((3, 4)))


def test_sampling_is_reparameterised():
    """At initialisation c = loc + scale * (b + exp(s) z): dc/db = scale exactly."""
    scale = (2.0, 0.5, 3.0)
    flow = ConditionalFlow(3, 2, event_scale=scale, hidden_sizes=(8,))
    params = flow.init(jax.random.key(0), jnp.zeros(3), jnp.zeros(2))
    x = jnp.ones(2)

    def total(p):
        return jnp.sum(flow.apply(p, jax.random.key(1), x, 5, method=ConditionalFlow.sample))

    grads = jax.jit(jax.grad(total))(params)
    out_layer = grads["params"]["context_affine"]["Dense_1"]["bias"]
    np.testing.assert_allclose(out_layer[:3], 5 * jnp.array(scale), rtol=1e-5)


def test_alternating_masks_and_spline_helpers():
    np.testing.assert_array_equal(alternating_mask(4, 0), [True, False, True, False])
    np.testing.assert_array_equal(alternating_mask(4, 1), [False, True, False, True])
    assert spline_param_count(8) == 25
    ident = rq_spline(jnp.zeros((3, spline_param_count(4))), 2.0)
    y, ld = ident.forward_and_log_det(jnp.array([-5.0, 0.3, 1.9]))
    np.testing.assert_allclose(y, [-5.0, 0.3, 1.9], atol=1e-6)
    np.testing.assert_allclose(ld, 0.0, atol=1e-6)


def test_bad_input_raises():
    flow = ConditionalFlow(3, 2)
    params = flow.init(jax.random.key(0), jnp.zeros(3), jnp.zeros(2))
    with pytest.raises(ValueError, match="context"):
        flow.apply(params, jnp.zeros(3), jnp.zeros(4), method=ConditionalFlow.log_prob)
    with pytest.raises(ValueError, match="c must"):
        flow.apply(params, jnp.zeros(2), jnp.zeros(2), method=ConditionalFlow.log_prob)
    with pytest.raises(ValueError, match="num_samples"):
        flow.apply(params, jax.random.key(0), jnp.zeros(2), 0, method=ConditionalFlow.sample)
    with pytest.raises(ValueError, match="coupling"):
        ConditionalFlow(3, 2, coupling="glow").init(jax.random.key(0), jnp.zeros(3), jnp.zeros(2))
    with pytest.raises(ValueError, match="event_scale"):
        ConditionalFlow(2, 1, event_scale=(1.0,)).init(jax.random.key(0), jnp.zeros(2), jnp.zeros(1))
    with pytest.raises(ValueError, match="num_bins"):
        spline_param_count(0)
    with pytest.raises(ValueError, match="bound"):
        rq_spline(jnp.zeros((2, 7)), 0.0)


def _conditional_gaussian(key, n):
    """c | x ~ N(m(x), S(x)): m = (2x, 1 - x), sd1 = 0.5 exp(0.4x), sd2 = 0.3, corr 0.6."""
    kx, kz = jax.random.split(key)
    x = jax.random.uniform(kx, (n, 1), minval=-1.5, maxval=1.5)
    mean, chol = _truth(x)
    z = jax.random.normal(kz, (n, 2))
    return x, mean + jnp.einsum("nij,nj->ni", chol, z)


def _truth(x):
    s1 = 0.5 * jnp.exp(0.4 * x[:, 0])
    s2 = jnp.full_like(s1, 0.3)
    rho = 0.6
    mean = jnp.stack([2 * x[:, 0], 1 - x[:, 0]], -1)
    zero = jnp.zeros_like(s1)
    chol = jnp.stack(
        [jnp.stack([s1, zero], -1), jnp.stack([rho * s2, math.sqrt(1 - rho**2) * s2], -1)], -2
    )
    return mean, chol


def test_nll_training_recovers_conditional_gaussian():
    from tailjax.dfl import fit_nll

    x, c = _conditional_gaussian(jax.random.key(0), 4000)
    flow = ConditionalFlow(2, 1, num_layers=2, hidden_sizes=(32,))
    result = fit_nll(jax.random.key(1), flow, x, c, num_steps=1000, batch_size=256,
                     learning_rate=3e-3)
    params = result.state.params
    probe = jnp.array([[-1.0], [0.0], [1.0]])
    samples = flow.apply(params, jax.random.key(2), probe, 20000, method=ConditionalFlow.sample)
    mean, chol = _truth(probe)
    cov = chol @ jnp.swapaxes(chol, -1, -2)
    est_mean = samples.mean(1)
    centred = samples - est_mean[:, None]
    est_cov = jnp.einsum("bki,bkj->bij", centred, centred) / samples.shape[1]
    np.testing.assert_allclose(est_mean, mean, atol=0.08)
    np.testing.assert_allclose(est_cov, cov, atol=0.04)
    # the learned NLL approaches the true conditional entropy
    true_nll = -jnp.mean(
        jax.scipy.stats.multivariate_normal.logpdf(c, *(_truth(x)[0], jnp.einsum("nij,nkj->nik", *(_truth(x)[1],) * 2)))
    )
    assert float(result.history["loss"][-50:].mean()) < float(true_nll) + 0.1  # the loss is the NLL


def test_positive_support_is_a_log_normal_when_fresh():
    """support="positive": a fresh flow is log-normal with the standardisation of log c."""
    from scipy.stats import lognorm

    loc, scale = (0.3, -1.0), (0.5, 2.0)
    flow = ConditionalFlow(2, 1, hidden_sizes=(4,), event_loc=loc, event_scale=scale, support="positive")
    params = jax.jit(flow.init)(jax.random.key(0), jnp.ones(2), jnp.zeros(1))
    c = jnp.array([[0.7, 2.5], [1.9, 0.1], [-1.0, 1.0]])
    x = jnp.zeros((3, 1))
    lp = jax.jit(lambda c, x: flow.apply(params, c, x, method=ConditionalFlow.log_prob))(c, x)
    expected = sum(lognorm.logpdf(np.asarray(c[:2, i]), s=scale[i], scale=np.exp(loc[i])) for i in range(2))
    np.testing.assert_allclose(lp[:2], expected, rtol=1e-5)
    assert lp[2] == -np.inf  # outside the support
    samples = flow.apply(params, jax.random.key(1), x[:1], 500, method=ConditionalFlow.sample)
    assert bool(jnp.all(samples > 0))
    np.testing.assert_allclose(jnp.mean(jnp.log(samples[0]), 0), loc, atol=0.25)
    # standardise_params(log=True) uses log c, and refuses non-positive costs
    data = jnp.exp(jnp.array([[0.0, 1.0], [2.0, 3.0]]))
    fitted = standardise_params(params, data, log=True)
    np.testing.assert_allclose(fitted["params"]["event_loc"], [1.0, 2.0], rtol=1e-6)
    with pytest.raises(ValueError, match="> 0"):
        standardise_params(params, -data, log=True)
    with pytest.raises(ValueError, match="support"):
        ConditionalFlow(2, 1, support="simplex").init(jax.random.key(0), jnp.ones(2), jnp.zeros(1))


_KEY = jax.random.key(0)


def _zero_noise(params, x, t, cond):
    return jnp.zeros_like(x)


def _init_flow(**kwargs):
    return ConditionalFlow(**{"event_dim": 2, "context_dim": 1, "num_layers": 1, "hidden_sizes": (4,), **kwargs}).init(
        _KEY, jnp.zeros(2), jnp.zeros(1))


def _flow_sample(num_samples):
    flow = ConditionalFlow(2, 1, num_layers=1, hidden_sizes=(4,))
    return flow.apply(_init_flow(), _KEY, jnp.zeros(1), num_samples, method=ConditionalFlow.sample)


def _conv_net(**kwargs):
    return ConvNoiseNet(**{"channels": 4, "depth": 1, "kernel_size": 3, "time_dim": 4, **kwargs}).init(
        _KEY, jnp.zeros(6), jnp.asarray(1))


# each was truncated (2.5 -> 2) or failed inside JAX, Flax or Python with a TypeError
@pytest.mark.parametrize("name,call", [
    pytest.param("num_steps", lambda: make_schedule(10.5), id="make_schedule-num_steps"),
    pytest.param("max_step", lambda: dm_loss(None, jnp.ones((4, 2)), _KEY, apply_fn=_zero_noise,
                                             schedule=make_schedule(10), max_step=2.5), id="dm_loss-max_step"),
    pytest.param("last_steps", lambda: ddpm_sample(_KEY, _zero_noise, None, make_schedule(10), (2,), last_steps=2.5),
                 id="ddpm_sample-last_steps"),
    pytest.param("channels", lambda: _conv_net(channels=4.5), id="ConvNoiseNet-channels"),
    pytest.param("depth", lambda: _conv_net(depth=1.5), id="ConvNoiseNet-depth"),
    pytest.param("kernel_size", lambda: _conv_net(kernel_size=2.5), id="ConvNoiseNet-kernel_size"),
    pytest.param("num_layers", lambda: _init_flow(num_layers=1.5), id="ConditionalFlow-num_layers"),
    pytest.param("num_samples", lambda: _flow_sample(2.5), id="ConditionalFlow.sample-num_samples"),
    pytest.param("num_bins", lambda: spline_param_count(2.5), id="spline_param_count-num_bins"),
    pytest.param("out_dim", lambda: LinearPredictor(2.5).init(_KEY, jnp.zeros((1, 2))), id="LinearPredictor-out_dim"),
    pytest.param("out_dim", lambda: MLPPredictor(2.5).init(_KEY, jnp.zeros((1, 2))), id="MLPPredictor-out_dim"),
    pytest.param("hidden sizes", lambda: MLPPredictor(3, (2.5,)).init(_KEY, jnp.zeros((1, 2))),
                 id="MLPPredictor-hidden"),
    pytest.param("num_features", lambda: init_predictor(LinearPredictor(3), _KEY, 2.5), id="init_predictor"),
])
def test_fractional_counts_are_refused_not_truncated(name, call):
    with pytest.raises(ValueError, match=rf"^{name} must be an integer"):
        call()


def test_numpy_integer_counts_still_work():
    assert spline_param_count(np.int64(8)) == spline_param_count(8) == 25
    np.testing.assert_array_equal(make_schedule(np.int64(10)).betas, make_schedule(10).betas)
    np.testing.assert_array_equal(_flow_sample(np.int64(3)), _flow_sample(3))

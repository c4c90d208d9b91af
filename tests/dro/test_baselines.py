import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.stats import multivariate_normal

from tailjax.dro.ambiguity import AmbiguitySet
from tailjax.dro.dragen import dragen_objective
from tailjax.dro.erm import dml_dataset, erm_objective
from tailjax.dro.pdro import fit_gmm, gmm_log_density, pdro
from tailjax.dro.predictor import concatenate, fit_predictor, minibatches, predictor_kernel
from tailjax.dro.wasserstein import penalty_ascent, wasserstein_objective

LOSS = lambda w, s: (jnp.dot(w, s[0]) - s[1]) ** 2


def _regression(n=64, seed=0):
    x = jax.random.normal(jax.random.key(seed), (n, 2))
    return x, x @ jnp.array([1.0, -2.0])


def test_erm_objective_is_the_mean_loss_and_fit_recovers_weights(optax_promotion):
    data = _regression()
    obj = erm_objective(LOSS)
    w = jnp.array([0.5, 0.5])
    ref = jnp.mean(jnp.stack([LOSS(w, (data[0][i], data[1][i])) for i in range(64)]))
    np.testing.assert_allclose(jax.jit(obj)(w, None, data), ref, rtol=1e-5)
    res = fit_predictor(predictor_kernel(obj, optax.adam(5e-2)), jnp.zeros(2), jax.random.key(0), data,
                        300, batch_size=32, progress=False)
    np.testing.assert_allclose(res.state.params, [1.0, -2.0], atol=0.05)


def test_minibatches_are_deterministic_and_validated():
    data = _regression(10)
    fn = minibatches(data, 4, seed=3)
    a, b = fn(5), fn(5)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[0].shape == (4, 2)
    with pytest.raises(ValueError, match="batch_size"):
        minibatches(data, 11)
    both = concatenate(data, data)
    assert both[0].shape == (20, 2)


def test_penalty_ascent_closed_form():
    # argmax_u a.u - g |u - x|^2 = x + a / (2 g)
    a, x, g = jnp.array([1.0, -3.0]), jnp.array([0.5, 0.2]), 2.0
    u = jax.jit(lambda x: penalty_ascent(lambda v: jnp.dot(a, v), x, g, 200, 0.1))(x)
    np.testing.assert_allclose(u, x + a / (2 * g), rtol=1e-5)


def test_wasserstein_objective_closed_form_for_linear_regression():
    # f(w, (x, y)) = (w.x - y)^2 perturbing y only: sup_y' (r + y - y')^2 - g (y' - y)^2
    # with r = w.x - y is r^2 g / (g - 1) at y' = y - r / (g - 1) (g > 1); loss there = (g r/(g-1))^2
    data = _regression(8)
    w, g = jnp.array([0.3, 0.1]), 3.0
    obj = wasserstein_objective(LOSS, penalty=g, steps=300, step_size=0.05,
                                where=lambda s: s[1], replace=lambda s, y: (s[0], y))
    r = data[0] @ w - data[1]
    np.testing.assert_allclose(jax.jit(obj)(w, None, data), jnp.mean((g * r / (g - 1)) ** 2), rtol=1e-4)
    # the robust loss dominates ERM
    assert float(obj(w, None, data)) > float(erm_objective(LOSS)(w, None, data))
    with pytest.raises(ValueError, match="penalty"):
        wasserstein_objective(LOSS, penalty=0.0)
    with pytest.raises(ValueError, match="steps"):
        wasserstein_objective(LOSS, steps=0)


def test_dragen_with_identity_autoencoder_is_wasserstein_dro():
    data = _regression(8)
    w = jnp.array([0.3, 0.1])
    kw = dict(penalty=2.0, steps=50, step_size=0.05)
    wdro = wasserstein_objective(LOSS, where=lambda s: s[0], replace=lambda s, x: (x, s[1]), **kw)
    dragen = dragen_objective(LOSS, encode=lambda s: s[0], decode=lambda z, s: (z, s[1]), **kw)
    np.testing.assert_allclose(jax.jit(dragen)(w, None, data), wdro(w, None, data), rtol=1e-6)
    # a linear decoder z -> 2 z: moving z by d moves x by 2 d, a cheaper adversary
    dragen2 = dragen_objective(LOSS, encode=lambda s: s[0] / 2, decode=lambda z, s: (2 * z, s[1]), **kw)
    assert float(dragen2(w, None, data)) > float(wdro(w, None, data))


def test_dml_dataset_appends_generated_samples():
    # any ambiguity set works: here P_theta = N(theta, I) in 3-D
    sample = lambda k, th, n: (th + jax.random.normal(k, (n, 3)), None)
    aset = AmbiguitySet(sample, None, None)
    theta = jnp.full(3, 5.0)
    data = jnp.ones((5, 3))
    out = dml_dataset(jax.random.key(1), aset, theta, data, 7, chunk=4)
    assert float(jnp.mean(out[5:])) > 3.0
    assert out.shape == (12, 3)
    np.testing.assert_array_equal(out[:5], data)
    with pytest.raises(ValueError, match="num_generated"):
        dml_dataset(jax.random.key(1), aset, theta, data, -1)


def test_gmm_density_against_scipy_and_em_recovers_components(x64):
    psi = {"logits": jnp.log(jnp.array([0.3, 0.7])), "means": jnp.array([[-2.0, 0.0], [2.0, 1.0]]),
           "log_stds": jnp.log(jnp.array([[0.5, 0.5], [0.4, 0.8]]))}
    x = jnp.array([0.3, -0.2])
    ref = np.log(0.3 * multivariate_normal.pdf(x, [-2, 0], np.diag([0.25, 0.25]))
                 + 0.7 * multivariate_normal.pdf(x, [2, 1], np.diag([0.16, 0.64])))
    np.testing.assert_allclose(jax.jit(gmm_log_density)(psi, x), ref, rtol=1e-10)
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    comp = jax.random.bernoulli(k1, 0.7, (2000,)).astype(jnp.int32)
    pts = psi["means"][comp] + jnp.exp(psi["log_stds"])[comp] * jax.random.normal(k2, (2000, 2))
    fit = jax.jit(fit_gmm, static_argnames=("components", "iters"))(k3, pts, components=2, iters=50)
    order = jnp.argsort(fit["means"][:, 0])
    np.testing.assert_allclose(fit["means"][order], psi["means"], atol=0.08)
    np.testing.assert_allclose(jax.nn.softmax(fit["logits"])[order], [0.3, 0.7], atol=0.03)
    with pytest.raises(ValueError, match="components"):
        fit_gmm(k3, pts[:3], components=4)


def test_pdro_adversary_upweights_high_loss_points(optax_promotion):
    # data in two clusters; the predictor is worse on the right cluster -> the adversary
    # moves mass there and the re-weighted loss exceeds the average loss
    x = jnp.concatenate([jnp.full((32, 1), -1.0), jnp.full((32, 1), 1.0)])
    x = x + 0.1 * jax.random.normal(jax.random.key(0), (64, 1))
    y = jnp.where(x[:, 0] > 0, 3.0, 0.0)
    loss = lambda w, s: (w * s[0][0] - s[1]) ** 2
    psi0 = fit_gmm(jax.random.key(1), x, components=2)
    init, step = pdro(loss, gmm_log_density, optax.sgd(0.0), optax.adam(0.05), tau=0.5,
                      features=lambda s: s[0])
    state = init(jnp.float32(0.0), psi0)
    step = jax.jit(step)
    for i in range(40):
        state, info = step(state, jax.random.key(i), (x, y))
    right = jnp.mean(jnp.exp(jax.vmap(lambda v: gmm_log_density(state.adversary, v))(x[32:])))
    left = jnp.mean(jnp.exp(jax.vmap(lambda v: gmm_log_density(state.adversary, v))(x[:32])))
    assert float(right) > 2 * float(left)
    assert float(info.loss) > float(jnp.mean(y**2)) * 0.5 * 1.2
    assert float(info.kl) > 0.0
    with pytest.raises(ValueError, match="tau"):
        pdro(loss, gmm_log_density, optax.sgd(0.1), optax.sgd(0.1), tau=0.0)

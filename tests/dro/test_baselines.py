import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.stats import multivariate_normal

from tailjax.base import Kernel
from tailjax.dro import (
    AmbiguitySet,
    PDroAdversaryBatch,
    dml_dataset,
    dragen_loss,
    erm_loss,
    gmm_log_density,
    gmm_mle,
    pdro_adversary_loss,
    pdro_kernel,
    penalty_ascent,
    reweighted_loss,
    wasserstein_loss,
)
from tailjax.dro.erm import per_sample_losses
from tailjax.training import fit, gradient_kernel, minibatches

LOSS = lambda w, s: (jnp.dot(w, s[0]) - s[1]) ** 2


def _value(loss, params, batch, **kw):
    """The value of a loss in the library's order, under jit."""
    return jax.jit(lambda p, b: loss(p, b, None, loss_fn=LOSS, **kw)[0])(params, batch)


def _regression(n=64, seed=0):
    x = jax.random.normal(jax.random.key(seed), (n, 2))
    return x, x @ jnp.array([1.0, -2.0])


def test_erm_loss_is_the_mean_loss_and_fit_recovers_weights():
    data = _regression()
    w = jnp.array([0.5, 0.5])
    ref = jnp.mean(jnp.stack([LOSS(w, (data[0][i], data[1][i])) for i in range(64)]))
    np.testing.assert_allclose(_value(erm_loss, w, data), ref, rtol=1e-5)
    np.testing.assert_allclose(jax.jit(lambda w: per_sample_losses(LOSS, w, data))(w)[3],
                               LOSS(w, (data[0][3], data[1][3])), rtol=1e-6)
    assert erm_loss(w, data, None, loss_fn=LOSS)[1] == {}
    kernel = gradient_kernel(functools.partial(erm_loss, loss_fn=LOSS), optax.adam(5e-2))
    res = fit(kernel, kernel.init(jnp.zeros(2)), jax.random.key(0), 300,
              batches=minibatches(jax.random.key(1), data, 32), progress=False)
    np.testing.assert_allclose(res.state.params, [1.0, -2.0], atol=0.05)


def test_penalty_ascent_closed_form():
    # argmax_u a.u - g |u - x|^2 = x + a / (2 g)
    a, x, g = jnp.array([1.0, -3.0]), jnp.array([0.5, 0.2]), 2.0
    u = jax.jit(lambda x: penalty_ascent(lambda v: jnp.dot(a, v), x, g, 200, 0.1))(x)
    np.testing.assert_allclose(u, x + a / (2 * g), rtol=1e-5)


def test_wasserstein_loss_closed_form_for_linear_regression():
    # f(w, (x, y)) = (w.x - y)^2 perturbing y only: sup_y' (r + y - y')^2 - g (y' - y)^2
    # with r = w.x - y is r^2 g / (g - 1) at y' = y - r / (g - 1) (g > 1); loss there = (g r/(g-1))^2
    data = _regression(8)
    w, g = jnp.array([0.3, 0.1]), 3.0
    kw = dict(penalty=g, steps=300, step_size=0.05, where=lambda s: s[1], replace=lambda s, y: (s[0], y))
    r = data[0] @ w - data[1]
    robust = _value(wasserstein_loss, w, data, **kw)
    np.testing.assert_allclose(robust, jnp.mean((g * r / (g - 1)) ** 2), rtol=1e-4)
    # the robust loss dominates ERM
    assert float(robust) > float(_value(erm_loss, w, data))
    with pytest.raises(ValueError, match="penalty"):
        wasserstein_loss(w, data, None, loss_fn=LOSS, penalty=0.0)
    with pytest.raises(ValueError, match="steps"):
        wasserstein_loss(w, data, None, loss_fn=LOSS, steps=0)


def test_dragen_with_identity_autoencoder_is_wasserstein_dro():
    data = _regression(8)
    w = jnp.array([0.3, 0.1])
    kw = dict(penalty=2.0, steps=50, step_size=0.05)
    wdro = _value(wasserstein_loss, w, data, where=lambda s: s[0], replace=lambda s, x: (x, s[1]), **kw)
    dragen = _value(dragen_loss, w, data, encode=lambda s: s[0], decode=lambda z, s: (z, s[1]), **kw)
    np.testing.assert_allclose(dragen, wdro, rtol=1e-6)
    # a linear decoder z -> 2 z: moving z by d moves x by 2 d, a cheaper adversary
    dragen2 = _value(dragen_loss, w, data, encode=lambda s: s[0] / 2, decode=lambda z, s: (2 * z, s[1]), **kw)
    assert float(dragen2) > float(wdro)
    with pytest.raises(ValueError, match="step_size"):
        dragen_loss(w, data, None, loss_fn=LOSS, encode=lambda s: s[0], decode=lambda z, s: (z, s[1]),
                    step_size=0.0)


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
    mle = jax.jit(gmm_mle, static_argnames=("components", "iters"))(k3, pts, components=2, iters=50)
    order = jnp.argsort(mle["means"][:, 0])
    np.testing.assert_allclose(mle["means"][order], psi["means"], atol=0.08)
    np.testing.assert_allclose(jax.nn.softmax(mle["logits"])[order], [0.3, 0.7], atol=0.03)
    with pytest.raises(ValueError, match="components"):
        gmm_mle(k3, pts[:3], components=4)
    with pytest.raises(ValueError, match="iters"):
        gmm_mle(k3, pts, components=2, iters=-1)


def test_pdro_adversary_upweights_high_loss_points():
    # data in two clusters; the predictor is worse on the right cluster -> the adversary
    # moves mass there and the re-weighted loss exceeds the average loss
    x = jnp.concatenate([jnp.full((32, 1), -1.0), jnp.full((32, 1), 1.0)])
    x = x + 0.1 * jax.random.normal(jax.random.key(0), (64, 1))
    y = jnp.where(x[:, 0] > 0, 3.0, 0.0)
    loss = lambda w, s: (w * s[0][0] - s[1]) ** 2
    psi0 = gmm_mle(jax.random.key(1), x, components=2)
    features = lambda s: s[0]
    kernel = pdro_kernel(loss, gmm_log_density, optax.sgd(0.0), optax.adam(0.05), kl_weight=0.5,
                         features=features)
    assert isinstance(kernel, Kernel)
    state = kernel.init(jnp.float32(0.0), psi0)
    step = jax.jit(kernel.step)
    for i in range(40):
        state, info = step(state, jax.random.key(i), (x, y))
    psi = state.adversary.params
    right = jnp.mean(jnp.exp(jax.vmap(lambda v: gmm_log_density(psi, v))(x[32:])))
    left = jnp.mean(jnp.exp(jax.vmap(lambda v: gmm_log_density(psi, v))(x[:32])))
    assert float(right) > 2 * float(left)
    assert float(info.loss) > float(jnp.mean(y**2)) * 0.5 * 1.2
    assert float(info.kl) > 0.0
    assert int(state.predictor.step) == 40 and int(state.adversary.step) == 40
    # the two players' losses in the library's order: at psi = psi0 the weights are uniform
    losses = per_sample_losses(loss, jnp.float32(0.0), (x, y))
    uniform = jnp.full(64, 1 / 64)
    np.testing.assert_allclose(reweighted_loss(jnp.float32(0.0), ((x, y), uniform), None, loss_fn=loss)[0],
                               jnp.mean(losses), rtol=1e-5)
    value, aux = pdro_adversary_loss(psi0, PDroAdversaryBatch((x, y), losses, psi0), None,
                                     log_density=gmm_log_density, features=features, kl_weight=0.5)
    np.testing.assert_allclose(value, -jnp.mean(losses), rtol=1e-5)
    np.testing.assert_allclose(aux["kl"], 0.0, atol=1e-5)
    with pytest.raises(ValueError, match="kl_weight"):
        pdro_kernel(loss, gmm_log_density, optax.sgd(0.1), optax.sgd(0.1), kl_weight=0.0)

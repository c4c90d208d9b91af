import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tailjax.dro.ambiguity import AmbiguitySet
from tailjax.dro.gas_dro import GasDroConfig
from tailjax.dro.methods import METHODS, MethodSettings, Resources, train_method
from tailjax.dro.pipeline import classification_loss, evaluate, forecast_loss, train_generator
from tailjax.dro.pdro import fit_gmm
from tailjax.nn.forecasters import MLPClassifier, MLPForecaster


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

    def recon(theta, key, batch):
        return jnp.mean((batch - theta) ** 2)

    aset = AmbiguitySet(sample, log_prob, recon)
    theta0 = jnp.mean(data, 0)
    res = Resources(ambiguity_set=aset, generator_params=theta0, generator_data=np.asarray(data),
                    dml_data=np.concatenate([np.asarray(data), np.asarray(sample(jax.random.key(2), theta0, 64)[0])]),
                    encode=lambda s: s, decode=lambda z, s: z, pdro_features=lambda s: s,
                    pdro_nominal=fit_gmm(jax.random.key(3), data, components=2, iters=10))
    return loss, params, np.asarray(data), res


@pytest.mark.parametrize("name", [m if m == "GAS-DRO" else pytest.param(m, marks=pytest.mark.slow)
                                  for m in METHODS])
def test_every_method_trains_the_same_predictor(name, optax_promotion):
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


def test_train_method_validation():
    loss, params, data = (lambda w, x: jnp.sum(w * x)), jnp.zeros(2), np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match="name"):
        train_method("ERM", jax.random.key(0), loss, params, data)
    with pytest.raises(ValueError, match="ambiguity_set"):
        train_method("GAS-DRO", jax.random.key(0), loss, params, data)


def test_pipeline_losses_and_generator_training(optax_promotion):
    clf = MLPClassifier(hidden=4, num_classes=3, image_ndim=1)
    p = clf.init(jax.random.key(0), jnp.zeros(5))
    f = classification_loss(clf, 3)
    x, y = jnp.ones(5), jax.nn.one_hot(1, 3)
    np.testing.assert_allclose(f(p, (x, y)), jnp.mean((clf.apply(p, x) - y) ** 2), rtol=1e-6)
    ev = evaluate(f, p, {"a": (jnp.ones((7, 5)), jnp.tile(y, (7, 1)))}, chunk=3)
    np.testing.assert_allclose(ev["a"], f(p, (x, y)), rtol=1e-5)
    # train_generator: fit a mean by least squares
    data = jnp.arange(20.0).reshape(10, 2)
    theta, trace = train_generator(jax.random.key(1), lambda th, k, b: jnp.mean((b - th) ** 2),
                                   jnp.zeros(2), data, 300, batch_size=5, learning_rate=0.5, chunk=100)
    np.testing.assert_allclose(theta, data.mean(0), atol=0.5)
    assert trace.shape == (300,) and trace[-1] < trace[0]


def test_matched_last_steps_follows_the_noise_level():
    from tailjax.dro.setups import PAPER_NOISE_LEVEL, matched_last_steps
    from tailjax.nn.ddpm import make_schedule

    assert matched_last_steps(make_schedule(500)) == 15  # the paper's T' = 15 of T = 500
    for T, beta_end in ((50, 0.4), (40, 0.5), (200, 0.1)):
        sched = make_schedule(T, beta_end=beta_end)
        k = matched_last_steps(sched)
        noise = np.sqrt(1.0 - np.asarray(sched.alpha_bars))
        assert noise[k - 1] >= PAPER_NOISE_LEVEL and (k == 1 or noise[k - 2] < PAPER_NOISE_LEVEL)
    assert matched_last_steps(make_schedule(10), level=2.0) == 10  # capped at T


def test_digits_setup_rejects_a_bad_validation_fraction():
    from tailjax.dro.setups import digits_setup

    with pytest.raises(ValueError, match="validation"):
        digits_setup(jax.random.key(0), validation=0.5)

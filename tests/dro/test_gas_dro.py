import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.scipy.stats import norm

from tailjax.base import Kernel
from tailjax.dro import (
    AmbiguitySet,
    GasDroBatch,
    GasDroConfig,
    OuterBatch,
    ddpm_ambiguity_set,
    fit_gas_dro,
    gas_dro_kernel,
    gas_dro_outer_loss,
    select_predictor,
    vae_ambiguity_set,
)
from tailjax.dro.gas_dro import _reservoir
from tailjax.checkpoint import CheckpointError
from tailjax.nn.ddpm import MLPNoiseNet, make_schedule
from tailjax.nn.vae import VAE, split_params

CFG = GasDroConfig(inner_steps=2, epochs=2, num_samples=8, outer_samples=8, budget=0.5, dual_lr=1.0)


@functools.lru_cache(maxsize=None)  # one kernel per config: tests share its compiled step
def _setup(cfg=CFG):
    s = make_schedule(10, beta_end=0.3)
    net = MLPNoiseNet((8,))
    theta = jax.jit(net.init)(jax.random.key(0), jnp.zeros(3), jnp.array(1))
    aset = ddpm_ambiguity_set(lambda p, x, t, c: net.apply(p, x, t, c), s, (3,), last_steps=3)
    loss = lambda w, x: (jnp.dot(w["a"], x[:2]) - x[2]) ** 2  # linear forecaster
    w = {"a": jnp.zeros(2)}
    kernel = gas_dro_kernel(aset, loss, optax.adam(1e-2), optax.adam(1e-3), cfg)
    data = jax.random.normal(jax.random.key(1), (40, 3))
    return kernel, w, theta, data


def test_gas_dro_step_under_jit(optax_promotion):
    kernel, w, theta, data = _setup()
    assert isinstance(kernel, Kernel)
    init, step = kernel
    state = init(w, theta)
    batch = data[:16].reshape(2, 8, 3)
    new, info = jax.jit(step)(state, jax.random.key(2), batch)
    assert int(new.count) == 1
    assert float(new.inner.mu) >= 0.0
    assert int(new.predictor.step) == CFG.outer_steps
    assert int(new.inner.generator.step) == CFG.inner_steps * CFG.epochs
    for v in info:
        assert np.all(np.isfinite(np.asarray(v)))
    # w moved, theta moved, nominal theta kept
    assert not np.allclose(new.predictor.params["a"], w["a"])
    moved = [not np.allclose(a, b) for a, b in zip(jax.tree_util.tree_leaves(new.inner.generator.params),
                                                    jax.tree_util.tree_leaves(theta))]
    assert any(moved)
    for a, b in zip(jax.tree_util.tree_leaves(new.nominal[0]), jax.tree_util.tree_leaves(theta)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="inner_steps"):
        step(state, jax.random.key(2), data[:24].reshape(3, 8, 3))


@pytest.mark.slow
def test_cold_start_restarts_from_the_nominal_generator(optax_promotion):
    cfg = CFG._replace(warm_start=False)
    (init, step), w, theta, data = _setup(cfg)
    state = init(w, theta)
    batch = data[:16].reshape(2, 8, 3)
    s1, _ = jax.jit(step)(state, jax.random.key(2), batch)
    # a cold step from a state whose current generator was moved gives the same result
    s1b, _ = jax.jit(step)(state._replace(inner=s1.inner), jax.random.key(2), batch)
    for a, b in zip(jax.tree_util.tree_leaves(s1.predictor.params), jax.tree_util.tree_leaves(s1b.predictor.params)):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_fit_gas_dro_resume_equals_uninterrupted_run(tmp_path, optax_promotion):
    kernel, w, theta, data = _setup()
    state = kernel.init(w, theta)
    key = jax.random.key(3)
    run = dict(config=CFG, batch_size=8, progress=False)
    full = fit_gas_dro(key, kernel, state, data, num_steps=4, **run)
    path = tmp_path / "gas_dro.ckpt"
    fit_gas_dro(key, kernel, state, data, num_steps=2, checkpoint_path=path, **run)
    resumed = fit_gas_dro(key, kernel, state, data, num_steps=4, checkpoint_path=path, **run)
    np.testing.assert_allclose(resumed.state.predictor.params["a"], full.state.predictor.params["a"], rtol=1e-6)
    assert resumed.history["mu"].shape == (4,)
    assert select_predictor(full.state, "uniform")["a"].shape == (2,)
    np.testing.assert_array_equal(select_predictor(full.state)["a"], full.state.predictor.params["a"])
    with pytest.raises(ValueError, match="rule"):
        select_predictor(full.state, "best")
    # the checkpoint knows its configuration: another budget or batch size is refused
    with pytest.raises(CheckpointError):
        fit_gas_dro(key, kernel, state, data, num_steps=4, checkpoint_path=path,
                    **{**run, "config": CFG._replace(budget=0.4)})
    with pytest.raises(CheckpointError):
        fit_gas_dro(key, kernel, state, data, num_steps=4, checkpoint_path=path, **{**run, "batch_size": 4})
    with pytest.raises(ValueError, match="nominal"):
        fit_gas_dro(key, kernel, state, data, num_steps=1, **{**run, "config": CFG._replace(nominal_weight=0.5)})


def test_reservoir_picks_uniformly_among_iterates():
    K, reps = 5, 4000

    def pick(key):
        def body(sel, inp):
            k, i = inp
            return _reservoir(k, sel, i.astype(jnp.float32), i + 1), None
        sel, _ = jax.lax.scan(body, jnp.float32(-1), (jax.random.split(key, K), jnp.arange(K)))
        return sel

    picks = np.asarray(jax.jit(jax.vmap(pick))(jax.random.split(jax.random.key(0), reps)))
    freq = np.bincount(picks.astype(int), minlength=K) / reps
    z = (freq - 1 / K) / np.sqrt((1 / K) * (1 - 1 / K) / reps)
    assert np.all(np.abs(z) < 4.5), freq


def test_config_validation():
    aset = AmbiguitySet(None, None, None)  # validation happens before anything is traced
    loss = lambda w, x: jnp.sum(x)
    for field, value in (("inner_steps", 0), ("outer_steps", 0), ("outer_samples", 0), ("clip", 1.0),
                         ("budget", -1.0), ("estimator", "trpo"), ("advantages", "rank")):
        with pytest.raises(ValueError, match=field):
            gas_dro_kernel(aset, loss, optax.sgd(0.1), optax.sgd(0.1), CFG._replace(**{field: value}))


def test_vae_ambiguity_set_freezes_encoder_and_scores_decoder_density(optax_promotion):
    vae = VAE((4,), latent_dim=2, hidden=(8,), obs_std=0.2)
    params = jax.jit(vae.init)(jax.random.key(0), jnp.zeros(4), jnp.zeros(2), jnp.zeros(3))
    encoder, decoder = split_params(params)
    onehot = lambda k: jax.nn.one_hot(jax.random.randint(k, (), 0, 3), 3)
    aset = vae_ambiguity_set(vae, params, cond_sampler=onehot)
    (x, c), traj = jax.jit(aset.sample, static_argnums=2)(jax.random.key(1), decoder, 6)
    assert x.shape == (6, 4) and c.shape == (6, 3)
    mean = vae.apply(params, traj.z, traj.cond, method=VAE.decode)
    ref = jnp.sum(norm.logpdf(traj.x, mean, 0.2), axis=-1)
    np.testing.assert_allclose(aset.log_prob(decoder, traj), ref, rtol=1e-5)
    data = (jax.random.normal(jax.random.key(2), (5, 4)), jax.nn.one_hot(jnp.arange(5) % 3, 3))
    g = jax.jit(jax.grad(lambda th: aset.reconstruction_loss(th, data, jax.random.key(3))))(decoder)
    assert jax.tree_util.tree_structure(g) == jax.tree_util.tree_structure(decoder)


@pytest.mark.slow
def test_gas_dro_step_on_the_vae_ambiguity_set(optax_promotion):
    vae = VAE((4,), latent_dim=2, hidden=(8,), obs_std=0.2)
    params = vae.init(jax.random.key(0), jnp.zeros(4), jnp.zeros(2), jnp.zeros(3))
    _, decoder = split_params(params)
    onehot = lambda k: jax.nn.one_hot(jax.random.randint(k, (), 0, 3), 3)
    aset = vae_ambiguity_set(vae, params, cond_sampler=onehot)
    data = (jax.random.normal(jax.random.key(2), (5, 4)), jax.nn.one_hot(jnp.arange(5) % 3, 3))
    loss = lambda w, s: jnp.sum((s[0] - w) ** 2)
    cfg = CFG._replace(inner_steps=2)
    init, step = gas_dro_kernel(aset, loss, optax.sgd(0.1), optax.adam(1e-2), cfg)
    state = init(jnp.zeros(4), decoder)
    batch = jax.tree_util.tree_map(lambda a: jnp.stack([a, a]), data)
    new, info = jax.jit(step)(state, jax.random.key(4), batch)
    assert np.isfinite(float(info.reconstruction))
    assert jax.tree_util.tree_structure(new.inner.generator.params) == jax.tree_util.tree_structure(decoder)


def test_outer_loss_mixes_the_nominal_batch_with_the_weight(optax_promotion):
    """A point-mass generator (S_j = theta_0 exactly) and plain SGD: the outer step is
    w - lr [(1 - lam) grad f(w, theta_0) + lam mean_B grad f(w, x)]."""
    theta0 = jnp.array([0.5, -1.0, 2.0])
    aset = AmbiguitySet(
        lambda key, th, n: (jnp.tile(th, (n, 1)), jnp.tile(th, (n, 1))),
        lambda th, x: -jnp.sum((x - th) ** 2, -1),
        lambda th, b, key: jnp.mean((b - th) ** 2),
    )
    loss = lambda w, x: (jnp.dot(w, x[:2]) - x[2]) ** 2
    nominal = jax.random.normal(jax.random.key(0), (6, 3))
    w0 = jnp.array([0.3, 0.1])
    lam = 0.25
    cfg = CFG._replace(inner_steps=1, epochs=1, nominal_weight=lam)
    init, step = gas_dro_kernel(aset, loss, optax.sgd(0.1), optax.sgd(0.1), cfg)
    batch = GasDroBatch(nominal[None, :4], nominal)
    new, info = jax.jit(step)(init(w0, theta0), jax.random.key(1), batch)
    g = lambda x: jax.grad(loss)(w0, x)
    expected = w0 - 0.1 * ((1 - lam) * g(theta0) + lam * jnp.mean(jax.vmap(g)(nominal), 0))
    np.testing.assert_allclose(new.predictor.params, expected, rtol=1e-5)
    f = jax.vmap(loss, in_axes=(None, 0))
    mixed = (1 - lam) * loss(w0, theta0) + lam * jnp.mean(f(w0, nominal))
    np.testing.assert_allclose(info.loss, mixed, rtol=1e-5)
    # the outer loss on its own, in the library's loss order
    value, aux = jax.jit(lambda w: gas_dro_outer_loss(w, OuterBatch(jnp.tile(theta0, (3, 1)), nominal), None,
                                                      loss_fn=loss, nominal_weight=lam))(w0)
    np.testing.assert_allclose(value, mixed, rtol=1e-5)
    assert aux == {}
    with pytest.raises(ValueError, match="nominal"):
        gas_dro_outer_loss(w0, OuterBatch(nominal), None, loss_fn=loss, nominal_weight=lam)
    with pytest.raises(ValueError, match="GasDroBatch"):
        step(init(w0, theta0), jax.random.key(1), nominal[None, :4])
    with pytest.raises(ValueError, match="nominal_weight"):
        gas_dro_kernel(aset, loss, optax.sgd(0.1), optax.sgd(0.1), cfg._replace(nominal_weight=1.0))


@pytest.mark.slow
def test_vae_encode_perturb_decode_keeps_the_real_label():
    vae = VAE((4,), latent_dim=2, hidden=(8,), obs_std=0.2)
    params = jax.jit(vae.init)(jax.random.key(0), jnp.zeros(4), jnp.zeros(2), jnp.zeros(3))
    _, decoder = split_params(params)
    x = jax.random.normal(jax.random.key(1), (5, 4))
    labels = jax.nn.one_hot(jnp.arange(5) % 3, 3)
    aset = vae_ambiguity_set(vae, params, anchors=(x, labels))
    (xs, cs), traj = jax.jit(aset.sample, static_argnums=2)(jax.random.key(2), decoder, 64)
    assert xs.shape == (64, 4) and cs.shape == (64, 3)
    # every drawn label is a real point's label, and the point was encoded from that real point
    rows = np.asarray(jnp.argmax(cs, -1))
    assert set(rows) <= {0, 1, 2}
    mean = vae.apply(params, traj.z, traj.cond, method=VAE.decode)
    ref = jnp.sum(norm.logpdf(traj.x, mean, 0.2), axis=-1)
    np.testing.assert_allclose(aset.log_prob(decoder, traj), ref, rtol=1e-5)
    with pytest.raises(ValueError, match="anchors"):
        vae_ambiguity_set(vae, params, anchors=jnp.zeros((5, 3)))

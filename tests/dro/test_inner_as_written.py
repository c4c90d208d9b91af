"""GAS-DRO's inner problem as the paper writes it: reverse steps T..T'+1 frozen at theta_0, J over
t <= T' with stratified t, the PPO reference fixed at theta_0, a constant sampling variance,
and the path-KL diagnostic."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tailjax.dro import InnerBatch, ddpm_ambiguity_set, inner_max_kernel
from tailjax.nn.ddpm import MLPNoiseNet, ddpm_sample, dm_loss, make_schedule, step_log_probs

from tests.dro.test_inner import _GaussianEps


def _net(T=8):
    s = make_schedule(T, beta_end=0.3)
    net = MLPNoiseNet((8,))
    theta = jax.jit(net.init)(jax.random.key(0), jnp.zeros(2), jnp.array(1))
    other = jax.tree_util.tree_map(lambda p: p + 0.3, theta)
    return s, (lambda p, x, t, c: net.apply(p, x, t, c)), theta, other


def test_frozen_prefix_makes_the_start_of_the_adversary_independent_of_theta():
    s, apply, theta, other = _net()
    run = jax.jit(lambda p, q: ddpm_sample(jax.random.key(1), apply, p, s, (2,), last_steps=3, prefix_params=q))
    _, frozen_a = run(theta, theta)
    _, frozen_b = run(other, theta)
    np.testing.assert_array_equal(frozen_a[0], frozen_b[0])  # x_{T'} comes from theta_0 alone
    assert not np.allclose(frozen_a[-1], frozen_b[-1])  # the last T' steps follow theta
    _, free_b = run(other, other)
    assert not np.allclose(free_b[0], frozen_a[0])  # without freezing, x_{T'} moves with theta
    aset = ddpm_ambiguity_set(apply, s, (2,), 3, frozen_params=theta)
    x, traj = jax.jit(aset.sample, static_argnums=2)(jax.random.key(2), other, 4)
    assert x.shape == (4, 2) and traj.states.shape == (4, 4, 2)


@pytest.mark.slow
def test_policy_std_sets_the_sampling_variance_and_the_log_density():
    s, apply, theta, _ = _net()
    _, states = ddpm_sample(jax.random.key(3), apply, theta, s, (2,), last_steps=3, policy_std=0.25)
    lp = step_log_probs(apply, theta, s, states, policy_std=0.25)
    ts = jnp.arange(3, 0, -1)
    from tailjax.nn.ddpm import reverse_mean

    mu = jax.vmap(lambda x, t: reverse_mean(s, x, t, apply(theta, x, t, None)))(states[:-1], ts)
    ref = jnp.sum(jax.scipy.stats.norm.logpdf(states[1:], mu, 0.25), axis=-1)
    np.testing.assert_allclose(lp, ref, rtol=1e-5)
    with pytest.raises(ValueError, match="policy_std"):
        ddpm_sample(jax.random.key(3), apply, theta, s, (2,), last_steps=3, policy_std=0.0)
    with pytest.raises(ValueError, match="policy_std"):
        ddpm_ambiguity_set(apply, s, (2,), 3, policy_std=-1.0)


def test_j_over_the_last_steps_matches_its_closed_form():
    T, sd, last = 50, 1.0, 15
    sched = make_schedule(T, beta_end=0.3)
    net = _GaussianEps(sd, sched.alpha_bars)
    apply = lambda p, x, t, c: net.apply(p, x, t)  # noqa: E731
    ab = sched.alpha_bars[:last]
    a = jnp.sqrt(1 - ab) / (ab * sd**2 + 1 - ab)
    j_closed = lambda m: float(jnp.mean(ab * sd**2 / (ab * sd**2 + 1 - ab)) + jnp.mean(a**2 * ab) * m**2)  # noqa: E731
    data = sd * jax.random.normal(jax.random.key(0), (4096, 1))
    theta = {"params": {"m": jnp.asarray(1.0)}}
    aset = ddpm_ambiguity_set(apply, sched, (1,), last)  # defaults: J over t <= T', stratified
    keys = jax.random.split(jax.random.key(1), 64)
    strat = jax.jit(jax.vmap(lambda k: aset.reconstruction_loss(theta, data[:256], k)))(keys)
    iid = jax.jit(jax.vmap(lambda k: dm_loss(theta, data[:256], k, apply_fn=apply, schedule=sched, max_step=last)[0]))(keys)
    np.testing.assert_allclose(float(jnp.mean(strat)), j_closed(1.0), rtol=0.03)
    np.testing.assert_allclose(float(jnp.mean(iid)), j_closed(1.0), rtol=0.05)
    with pytest.raises(ValueError, match="reconstruction_steps"):
        ddpm_ambiguity_set(apply, sched, (1,), last, reconstruction_steps="first")
    with pytest.raises(ValueError, match="max_step"):
        dm_loss(theta, data[:4], keys[0], apply_fn=apply, schedule=sched, max_step=51)


def test_stratified_steps_cover_every_step_evenly():
    from tailjax.nn.ddpm import _draw_steps

    t = np.asarray(_draw_steps(jax.random.key(0), 45, 15, True))
    np.testing.assert_array_equal(np.bincount(t, minlength=16)[1:], np.full(15, 3))


def test_nominal_reference_inner_max_moves_up_and_reports_the_path_kl(optax_promotion):
    """Fixed theta_0 reference with the initial set drawn once: the adversary raises the
    mean (the loss-increasing direction), the importance-weighted objective rises, and the
    path KL E_theta log(P_theta / P_theta0) is >= 0 and grows from 0."""
    T, sd = 50, 1.0
    sched = make_schedule(T, beta_end=0.3)
    net = _GaussianEps(sd, sched.alpha_bars)
    theta0 = {"params": {"m": jnp.zeros(())}}
    aset = ddpm_ambiguity_set(lambda p, x, t, c: net.apply(p, x, t), sched, (1,), last_steps=15, frozen_params=theta0)
    data = sd * jax.random.normal(jax.random.key(0), (1024, 1))
    kernel = inner_max_kernel(aset, lambda w, x: x[0], optax.adam(0.02), budget=10.0, dual_lr=0.0,
                              num_samples=256, epochs=3)
    draws = jax.jit(aset.sample, static_argnums=2)(jax.random.key(5), theta0, 256)
    step = jax.jit(kernel.step)
    state = kernel.init(theta0)
    infos = []
    for k in range(15):
        state, info = step(state, jax.random.key(k), InnerBatch(None, data[:256], theta0, draws))
        infos.append(info)
    assert float(state.generator.params["params"]["m"]) > 0.05
    assert float(infos[-1].objective) > float(infos[0].objective) - 1e-6
    kl = np.array([float(i.path_kl) for i in infos])
    assert np.all(kl > -1e-4) and kl[-1] > kl[0]
    with pytest.raises(ValueError, match="reference"):
        step(state, jax.random.key(0), InnerBatch(None, data[:256]))

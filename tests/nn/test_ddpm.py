import functools

import jax
import jax.numpy as jnp
import numpy as np
import flax.linen as nn
import optax
import pytest
from jax.scipy.stats import norm

from tailjax.nn.ddpm import (
    ConvNoiseNet,
    MLPNoiseNet,
    ddpm_sample,
    dm_loss,
    dm_loss_weights,
    make_schedule,
    q_sample,
    reverse_mean,
    timestep_embedding,
    step_log_probs,
    trajectory_log_prob,
)
from tailjax.training import gradient_kernel


def _mlp(dim=2, features=(32, 32), seed=0, perturb=True):
    net = MLPNoiseNet(features)
    params = jax.jit(net.init)(jax.random.key(seed), jnp.zeros(dim), jnp.array(1))
    if perturb:  # the last layer starts at zero; move it so eps_theta is not constant
        leaves, tree = jax.tree_util.tree_flatten(params)
        keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
        leaves = [l + 0.1 * jax.random.normal(k, l.shape) for l, k in zip(leaves, keys)]
        params = jax.tree_util.tree_unflatten(tree, leaves)
    return net, params, (lambda p, x, t, c: net.apply(p, x, t, c))


@pytest.mark.parametrize("kind", ["linear", "quadratic", "cosine"])
@pytest.mark.parametrize("variance", ["beta", "posterior"])
def test_schedule_invariants(kind, variance):
    s = make_schedule(100, kind, variance=variance)
    assert s.num_steps == 100
    assert np.all(np.asarray(s.betas) > 0) and np.all(np.asarray(s.betas) < 1)
    np.testing.assert_allclose(s.alpha_bars, np.cumprod(1 - np.asarray(s.betas)), rtol=1e-5)
    assert np.all(np.diff(np.asarray(s.alpha_bars)) < 0)
    assert np.all(np.asarray(s.sigmas) > 0)
    if variance == "posterior":
        assert s.sigmas[0] == s.sigmas[1]


def test_schedule_bad_input():
    with pytest.raises(ValueError, match="num_steps"):
        make_schedule(1)
    with pytest.raises(ValueError, match="kind"):
        make_schedule(10, "sigmoid")
    with pytest.raises(ValueError, match="variance"):
        make_schedule(10, variance="learned")
    with pytest.raises(ValueError, match="beta_start"):
        make_schedule(10, beta_start=0.1, beta_end=0.01)
    with pytest.raises(ValueError, match="dtype must be a floating-point dtype"):
        make_schedule(10, dtype=jnp.int32)
    with pytest.raises(ValueError, match="dim"):
        timestep_embedding(jnp.arange(3), 5)


def test_elbo_weight_is_the_kl_between_posterior_and_model_means():
    # KL(q(x_{t-1}|x_t,x_0) || p_theta(x_{t-1}|x_t)) = |mu_q - mu_theta|^2 / (2 sigma^2)
    # and mu_q is the reverse mean with the true noise: the ELBO weight must match.
    s = make_schedule(50, beta_end=0.2)
    w = dm_loss_weights(s, "elbo")
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    x_t, eps, eps_hat = (jax.random.normal(k, (5,)) for k in (k1, k2, k3))
    for t in (1, 7, 50):
        tt = jnp.array(t)
        d_mu = reverse_mean(s, x_t, tt, eps) - reverse_mean(s, x_t, tt, eps_hat)
        kl = jnp.sum(d_mu**2) / (2 * s.sigmas[t - 1] ** 2)
        np.testing.assert_allclose(kl, w[t - 1] * jnp.sum((eps - eps_hat) ** 2), rtol=1e-4)
    np.testing.assert_array_equal(dm_loss_weights(s, "simple"), jnp.ones(50))
    with pytest.raises(ValueError, match="weighting"):
        dm_loss_weights(s, jnp.ones(3))


def test_q_sample_marginal_moments():
    s = make_schedule(100)
    x0 = jnp.array([1.5, -2.0])
    noise = jax.random.normal(jax.random.key(0), (20000, 2))
    xt = jax.vmap(lambda n: q_sample(s, x0, jnp.array(40), n))(noise)
    ab = s.alpha_bars[39]
    np.testing.assert_allclose(xt.mean(0), jnp.sqrt(ab) * x0, atol=0.03)
    np.testing.assert_allclose(xt.var(0), 1 - ab, rtol=0.05)


def test_trajectory_log_prob_is_sum_of_gaussian_step_densities():
    s = make_schedule(30, beta_end=0.3)
    net, params, apply = _mlp()
    x0, states = jax.jit(lambda k: ddpm_sample(k, apply, params, s, (2,), last_steps=6))(jax.random.key(3))
    assert states.shape == (7, 2)
    np.testing.assert_allclose(states[-1], x0)

    @jax.jit
    def manual(states):  # one Gaussian density per step, one network call per step
        total = 0.0
        for i in range(6):
            t = 6 - i
            mu = reverse_mean(s, states[i], jnp.array(t), net.apply(params, states[i], jnp.array(t)))
            total += jnp.sum(norm.logpdf(states[i + 1], mu, s.sigmas[t - 1]))
        return total

    manual = manual(states)
    per_step, total = jax.jit(lambda st: (step_log_probs(apply, params, s, st),
                                          trajectory_log_prob(apply, params, s, st)))(states)
    assert per_step.shape == (6,)
    np.testing.assert_allclose(jnp.sum(per_step), manual, rtol=1e-5)
    np.testing.assert_allclose(total, manual, rtol=1e-5)


@pytest.mark.slow
def test_sampling_scan_split_matches_full_scan():
    s = make_schedule(20, beta_end=0.3)
    _, params, apply = _mlp()
    full = ddpm_sample(jax.random.key(1), apply, params, s, (2,))
    part, states = ddpm_sample(jax.random.key(1), apply, params, s, (2,), last_steps=5)
    np.testing.assert_allclose(full, part, rtol=1e-6)
    with pytest.raises(ValueError, match="last_steps"):
        ddpm_sample(jax.random.key(1), apply, params, s, (2,), last_steps=21)


class _StdGaussianEps(MLPNoiseNet):
    """The exact eps-predictor of N(0, I) data, eps = sqrt(1 - abar_t) x_t, times a learnable
    scale; a trained model behaves like it, an untrained one lets x blow up when beta is big."""

    alpha_bars: jnp.ndarray = None

    @nn.compact
    def __call__(self, x, t, cond=None):
        scale = self.param("scale", nn.initializers.ones, ())
        ab = self.alpha_bars[t - 1]
        return scale * jnp.sqrt(1.0 - ab)[..., None] * x


@pytest.mark.parametrize(
    "which", ["underflow", pytest.param("linear", marks=pytest.mark.slow), pytest.param("cosine", marks=pytest.mark.slow)]
)
def test_float32_stable_with_500_steps(which):
    if which == "underflow":
        s = make_schedule(500, beta_start=1e-4, beta_end=0.5)
        assert s.alpha_bars.dtype == jnp.float32 and float(s.alpha_bars[-1]) == 0.0
        net = _StdGaussianEps(alpha_bars=s.alpha_bars)
        params = net.init(jax.random.key(0), jnp.zeros(2), jnp.array(1))
        apply = lambda p, x, t, c: net.apply(p, x, t)
    else:
        s = make_schedule(500, which)
        _, params, apply = _mlp()
    keys = jax.random.split(jax.random.key(0), 8)
    x0, states = jax.jit(jax.vmap(lambda k: ddpm_sample(k, apply, params, s, (2,), last_steps=15)))(keys)
    lp = jax.vmap(lambda st: trajectory_log_prob(apply, params, s, st))(states)
    loss, _ = dm_loss(params, x0, jax.random.key(1), apply_fn=apply, schedule=s, weighting="elbo")
    g = jax.grad(lambda p: jnp.sum(jax.vmap(lambda st: trajectory_log_prob(apply, p, s, st))(states)))(params)
    for v in (x0, states, lp, loss, *jax.tree_util.tree_leaves(g)):
        assert np.all(np.isfinite(np.asarray(v)))
    if which == "underflow":  # samples of N(0, I): the reverse chain is the right one
        assert float(jnp.max(jnp.abs(x0))) < 6.0
        # the x0-prediction form would divide by sqrt(abar_T) = 0
        assert np.all(np.isfinite(reverse_mean(s, jnp.ones(2), jnp.array(500), jnp.ones(2))))


@pytest.mark.parametrize("kind", ["mlp", pytest.param("unet1d", marks=pytest.mark.slow),
                                  pytest.param("conv", marks=pytest.mark.slow)])
def test_noise_nets_batch_equals_single(kind):
    from tailjax.nn.unet1d import UNet1D

    x = jax.random.normal(jax.random.key(0), (4, 25))  # 25: not a multiple of 8, padded inside UNet1D
    t = jnp.array([1, 5, 9, 200])
    nets = {"mlp": MLPNoiseNet((16,)), "conv": ConvNoiseNet(channels=8, depth=2), "unet1d": UNet1D((4, 8), time_dim=8)}
    for net in [nets[kind]]:
        params = jax.jit(net.init)(jax.random.key(1), x[0], t[0])
        params = jax.tree_util.tree_map(lambda p: p + 0.05, params)
        batched, single = jax.jit(lambda x, t: (net.apply(params, x, t), net.apply(params, x[1], t[1])))(x, t)
        single = jnp.broadcast_to(single, x.shape)
        batched = batched.at[0].set(single[0]).at[2:].set(single[2:])  # compare row 1
        assert batched.shape == x.shape
        # UNet1D: XLA's batched convolutions sum in another order; a row mixing bug would be O(1)
        tol = dict(rtol=5e-3, atol=5e-4) if kind == "unet1d" else dict(rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(batched, single, **tol)
        if kind == "unet1d":  # the zero-padded end is read, and t conditions the output
            f = jax.jit(lambda x, t: net.apply(params, x, t))
            assert not np.allclose(f(x[1], t[1]), f(x[1].at[-1].add(1.0), t[1]))
            assert not np.allclose(f(x[1], t[1]), f(x[1], t[3]))


def test_dm_loss_errors_and_conditioning():
    s = make_schedule(10)
    net = MLPNoiseNet((8,))
    params = jax.jit(net.init)(jax.random.key(0), jnp.zeros(3), jnp.array(1), jnp.zeros(2))
    apply = lambda p, x, t, c: net.apply(p, x, t, c)
    v, aux = jax.jit(lambda p: dm_loss(p, (jnp.ones((4, 3)), jnp.ones((4, 2))), jax.random.key(0),
                                       apply_fn=apply, schedule=s))(params)
    assert np.isfinite(v) and aux == {}
    with pytest.raises(ValueError, match="x0"):
        dm_loss(params, jnp.ones((0, 3)), jax.random.key(0), apply_fn=apply, schedule=s)


def test_dm_loss_trains_with_the_gradient_kernel():
    """dm_loss has the library's loss shape: partial(dm_loss, apply_fn=..., schedule=...) is a
    loss for training.gradient_kernel, and one step on a batch lowers it on that batch."""
    s = make_schedule(10)
    net = MLPNoiseNet((8,))
    params = jax.jit(net.init)(jax.random.key(0), jnp.zeros(3), jnp.array(1))
    apply = lambda p, x, t, c: net.apply(p, x, t, c)
    loss = functools.partial(dm_loss, apply_fn=apply, schedule=s)
    kernel = gradient_kernel(loss, optax.sgd(0.05))
    x0 = jax.random.normal(jax.random.key(1), (32, 3)) + 2.0
    key = jax.random.key(2)

    @jax.jit
    def before_after(state):
        new, info = kernel.step(state, key, x0)
        return info.loss, loss(new.params, x0, key)[0]

    before, after = before_after(kernel.init(params))
    assert float(after) < float(before)


@pytest.mark.slow
def test_ddpm_on_gaussian_mixture_matches_moments():
    centers = jnp.array([[-2.0, 0.0], [2.0, 1.0]])
    def data(key, n):
        k1, k2 = jax.random.split(key)
        comp = jax.random.bernoulli(k1, 0.3, (n,)).astype(jnp.int32)
        return centers[comp] + 0.5 * jax.random.normal(k2, (n, 2))
    s = make_schedule(100, beta_end=0.1)
    net = MLPNoiseNet((64, 64))
    apply = lambda p, x, t, c: net.apply(p, x, t, c)
    params = net.init(jax.random.key(0), jnp.zeros(2), jnp.array(1))
    kernel = gradient_kernel(functools.partial(dm_loss, apply_fn=apply, schedule=s), optax.adam(3e-3))

    @jax.jit
    def train(params, key):
        def step(state, k):
            k1, k2 = jax.random.split(k)
            return kernel.step(state, k1, data(k2, 256))[0], None
        state, _ = jax.lax.scan(step, kernel.init(params), jax.random.split(key, 1500))
        return state.params

    params = train(params, jax.random.key(1))
    keys = jax.random.split(jax.random.key(2), 4000)
    x = jax.jit(jax.vmap(lambda k: ddpm_sample(k, apply, params, s, (2,))))(keys)
    ref = data(jax.random.key(3), 200_000)
    np.testing.assert_allclose(x.mean(0), ref.mean(0), atol=0.15)
    np.testing.assert_allclose(jnp.cov(x.T), jnp.cov(ref.T), atol=0.3)
    # bimodality: the share of samples on the right (x > 0) is the mixture weight 0.3
    assert abs(float(jnp.mean(x[:, 0] > 0)) - 0.3) < 0.06

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailjax.base import Kernel
from tailjax.dro import (
    InnerBatch,
    PolicyBatch,
    ddpm_ambiguity_set,
    dual_update,
    inner_max_kernel,
    lagrangian_loss,
    ppo_ratio,
    ppo_surrogate,
    reinforce_surrogate,
    standardize,
)
from tailjax.nn.ddpm import MLPNoiseNet, make_schedule


def _small_set(T=8, last=3, dim=3, dtype=jnp.float32):
    s = make_schedule(T, beta_end=0.3, dtype=dtype)
    net = MLPNoiseNet((16,))
    params = jax.jit(net.init)(jax.random.key(0), jnp.zeros(dim, jnp.float32), jnp.array(1))
    params = jax.tree_util.tree_map(lambda p: (p + 0.05).astype(dtype), params)
    apply = lambda p, x, t, c: net.apply(p, x, t, c)
    return ddpm_ambiguity_set(apply, s, (dim,), last, dtype=dtype), params


def test_ppo_ratio_is_one_and_gradient_equals_reinforce_at_theta_old(x64):
    aset, theta = _small_set(dtype=jnp.float64)
    samples, traj = jax.jit(aset.sample, static_argnums=2)(jax.random.key(1), theta, 16)
    adv = standardize(jnp.sum(samples**2, axis=-1))
    logp_old = aset.log_prob(theta, traj)
    np.testing.assert_allclose(ppo_ratio(aset.log_prob(theta, traj), logp_old), 1.0, rtol=1e-6)
    g_ppo, g_rf = jax.jit(lambda th: (
        jax.grad(lambda p: ppo_surrogate(aset.log_prob(p, traj), logp_old, adv, 0.4))(th),
        jax.grad(lambda p: reinforce_surrogate(aset.log_prob(p, traj), adv))(th)))(theta)
    for a, b in zip(jax.tree_util.tree_leaves(g_ppo), jax.tree_util.tree_leaves(g_rf)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    assert any(float(jnp.max(jnp.abs(a))) > 0 for a in jax.tree_util.tree_leaves(g_ppo))


def test_ppo_clipping_removes_the_gradient_outside_the_trust_region():
    logp_old = jnp.zeros(4)
    adv = jnp.array([1.0, 1.0, -1.0, -1.0])
    # ratios 1.6 (A > 0, clipped), 1.1 (inside), 0.5 (A < 0, clipped), 0.9 (inside)
    logp = jnp.log(jnp.array([1.6, 1.1, 0.5, 0.9]))
    g = jax.grad(lambda lp: ppo_surrogate(lp, logp_old, adv, 0.4))(logp)
    rho = jnp.exp(logp)
    np.testing.assert_allclose(g, jnp.array([0.0, rho[1], 0.0, -rho[3]]) / 4, rtol=1e-6)
    # pessimism: a ratio beyond the region still counts when it lowers the objective
    g2 = jax.grad(lambda lp: ppo_surrogate(lp, logp_old, -adv, 0.4))(logp)
    assert g2[0] != 0 and g2[2] != 0
    with pytest.raises(ValueError, match="clip"):
        ppo_surrogate(logp, logp_old, adv, 1.5)


_F32 = dict(width=32, allow_subnormal=False)  # exact float32 inputs; XLA on CPU flushes subnormals


@settings(max_examples=50, deadline=None)
@given(
    mu=st.floats(0, 100, **_F32),
    j=st.floats(0, 10, **_F32),
    eps=st.floats(0, 1, **_F32),
    lr=st.floats(0, 10, **_F32),
)
def test_dual_update_keeps_mu_nonnegative_and_moves_with_the_violation(mu, j, eps, lr):
    new = float(_jit_dual_update(jnp.float32(mu), jnp.float32(j), jnp.float32(eps), jnp.float32(lr)))
    assert new >= 0.0
    # float32 rounding is monotone, so the direction holds exactly
    if j > eps:
        assert new >= mu
    if j < eps:
        assert new <= mu
    expected = max(0.0, mu + lr * (j - eps))
    np.testing.assert_allclose(new, expected, rtol=1e-5, atol=1e-6 * (1.0 + mu + lr * (j + eps)))


_jit_dual_update = jax.jit(dual_update)


def test_dual_update_raises_mu_when_j_exceeds_budget():
    mu = jax.jit(dual_update)(jnp.float32(0.5), jnp.float32(0.03), 0.015, 0.01)
    np.testing.assert_allclose(mu, 0.5 + 0.01 * 0.015, rtol=1e-6)
    assert float(dual_update(jnp.float32(0.0), jnp.float32(0.0), 0.015, 10.0)) == 0.0


class _GaussianEps(nn.Module):
    """Exact eps-predictor of N(m, s^2) data with learnable mean m: the DDPM ambiguity set of
    a 1-D Gaussian nominal, whose reconstruction loss is J(m) = J(m0) + c (m - m0)^2."""

    s: float
    alpha_bars: jnp.ndarray

    @nn.compact
    def __call__(self, x, t, cond=None):
        m = self.param("m", nn.initializers.zeros, ())
        ab = self.alpha_bars[t - 1]
        a = jnp.sqrt(1 - ab) / (ab * self.s**2 + 1 - ab)
        return a[..., None] * (x - jnp.sqrt(ab)[..., None] * m)


@pytest.mark.parametrize("estimator", ["ppo", pytest.param("reinforce", marks=pytest.mark.slow)])
def test_inner_max_on_gaussian_toy_moves_mean_up_to_the_budget(estimator, optax_promotion):
    """On-policy inner max (reference re-set to theta_k, every step by the adversary's theta,
    J over all T steps): the mean stops where J meets the budget."""
    T, s = 50, 1.0
    sched = make_schedule(T, beta_end=0.3)
    net = _GaussianEps(s, sched.alpha_bars)
    aset = ddpm_ambiguity_set(lambda p, x, t, c: net.apply(p, x, t), sched, (1,), last_steps=15,
                              reconstruction_steps="all", stratified=False)
    ab = sched.alpha_bars
    a = jnp.sqrt(1 - ab) / (ab * s**2 + 1 - ab)
    j0, c = jnp.mean(ab * s**2 / (ab * s**2 + 1 - ab)), jnp.mean(a**2 * ab)
    data = s * jax.random.normal(jax.random.key(0), (4096, 1))
    theta0 = {"params": {"m": jnp.zeros(())}}
    # closed form J(m) against the Monte-Carlo J_DM of the ambiguity set
    for m in (0.0, 1.0):
        th = {"params": {"m": jnp.asarray(m)}}
        mc = jnp.mean(jax.vmap(lambda k: aset.reconstruction_loss(th, data, k))(jax.random.split(jax.random.key(1), 8)))
        np.testing.assert_allclose(mc, j0 + c * m**2, rtol=0.03)
    delta_star = 0.5
    budget = float(j0 + c * delta_star**2)  # worst case under J <= budget: m = +0.5
    kernel = inner_max_kernel(aset, lambda w, x: x[0], optax.adam(0.02), budget=budget, dual_lr=100.0,
                              num_samples=128, epochs=3, estimator=estimator, reference="current")
    assert isinstance(kernel, Kernel)
    step = jax.jit(kernel.step)
    state = kernel.init(theta0)
    ms = []
    for k in range(80):
        state, info = step(state, jax.random.key(k), InnerBatch(None, data[:2048]))
        ms.append(float(state.generator.params["params"]["m"]))
    m_final = float(np.mean(ms[-15:]))
    assert m_final > 0.3  # the loss-increasing direction
    assert abs(m_final - delta_star) < 0.12  # stops at the budget, not beyond
    assert float(j0 + c * m_final**2) <= budget + 0.3 * (budget - float(j0))
    assert float(info.mu) > 0.0


def test_inner_max_kernel_bad_input():
    aset = None  # validation happens before the ambiguity set is used
    loss = lambda w, x: jnp.sum(x)
    with pytest.raises(ValueError, match="clip"):
        inner_max_kernel(aset, loss, optax.adam(1e-3), clip=0.0)
    with pytest.raises(ValueError, match="estimator"):
        inner_max_kernel(aset, loss, optax.adam(1e-3), estimator="trpo")
    with pytest.raises(ValueError, match="num_samples"):
        inner_max_kernel(aset, loss, optax.adam(1e-3), num_samples=1)
    with pytest.raises(ValueError, match="epochs"):
        inner_max_kernel(aset, loss, optax.adam(1e-3), epochs=0)
    with pytest.raises(ValueError, match="budget"):
        inner_max_kernel(aset, loss, optax.adam(1e-3), budget=-1.0)
    with pytest.raises(ValueError, match="advantages"):
        inner_max_kernel(aset, loss, optax.adam(1e-3), advantages="rank")
    with pytest.raises(ValueError, match="reference"):
        inner_max_kernel(aset, loss, optax.adam(1e-3), reference="theta_k")
    with pytest.raises(ValueError, match="dual_lr"):
        inner_max_kernel(aset, loss, optax.adam(1e-3), dual_lr=-0.1)


def test_lagrangian_loss_is_minus_surrogate_plus_mu_j():
    aset, theta = _small_set()
    data = jax.random.normal(jax.random.key(2), (16, 3))
    key = jax.random.key(3)

    @jax.jit
    def values(theta):
        samples, traj = aset.sample(jax.random.key(1), theta, 8)
        adv = standardize(jnp.sum(samples**2, axis=-1))
        logp_old = aset.log_prob(theta, traj) - 0.1  # ratios exp(0.1), inside the clip region
        batch = PolicyBatch(traj, logp_old, adv, jnp.float32(0.7), data)
        ppo, aux = lagrangian_loss(theta, batch, key, ambiguity_set=aset, estimator="ppo")
        reinforce, _ = lagrangian_loss(theta, batch, key, ambiguity_set=aset, estimator="reinforce")
        logp = aset.log_prob(theta, traj)
        j = aset.reconstruction_loss(theta, data, key)
        refs = (-ppo_surrogate(logp, logp_old, adv, 0.4) + 0.7 * j, -reinforce_surrogate(logp, adv) + 0.7 * j)
        return (ppo, reinforce), refs, aux["reconstruction"], j

    got, refs, j_aux, j = values(theta)
    np.testing.assert_allclose(got, refs, rtol=1e-5)
    np.testing.assert_allclose(j_aux, j, rtol=1e-6)
    with pytest.raises(ValueError, match="estimator"):
        lagrangian_loss(theta, None, key, ambiguity_set=aset, estimator="trpo")

"""Adjoint matching against closed forms, with the exact Gaussian base velocity."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tailjax.flows.adjoint import AdjointMatchingBatch, adjoint_matching, adjoint_matching_loss, lean_adjoint
from tailjax.flows.finetune import fit_adjoint_matching
from tailjax.flows.gaussian import gaussian_mixture_velocity, gaussian_velocity, tilt_gaussian_mixture
from tailjax.flows.schedule import rectified_flow
from tailjax.flows.sde import memoryless_coefficients, memoryless_solve

MU = np.array([0.5, -1.0])
COV = np.array([[1.44, 0.6], [0.6, 0.61]])
C = np.array([1.0, 0.5])
LAM = 1.0


def base(x, t):
    return gaussian_velocity(x, t, MU, COV)


def analytic_adjoint(ts):
    """a(t) = -lambda alpha_t S_t^{-1} C c for Gaussian data and r = c.x."""
    s = rectified_flow()

    def one(t):
        st = s.beta(t) ** 2 * jnp.eye(2) + s.alpha(t) ** 2 * COV
        return -LAM * s.alpha(t) * jnp.linalg.solve(st, COV @ C)

    return jax.vmap(one)(ts)


def _adjoint_error(k, exact_kappa):
    coefs = memoryless_coefficients(num_steps=k)
    traj = jax.random.normal(jax.random.key(0), (k + 1, 2))  # linear reward: any path gives the same adjoint

    @jax.jit
    def errors(traj):
        adj, vb = lean_adjoint(base, traj, -LAM * jnp.asarray(C), coefs, exact_kappa=exact_kappa)
        ref = analytic_adjoint(coefs.ts)
        err = jnp.max(jnp.linalg.norm(adj[1:] - ref[1:], axis=-1) / jnp.linalg.norm(ref[1:], axis=-1))
        return err, jnp.max(jnp.abs(vb[1:] - jax.vmap(base)(traj[1:], coefs.ts[1:])))

    err, vb_err = errors(traj)
    assert vb_err < 1e-10
    return float(err)


def test_lean_adjoint_matches_closed_form_first_order(x64):
    e10, e40 = _adjoint_error(10, True), _adjoint_error(40, True)
    assert e40 < 0.04
    assert 3.0 < e10 / e40 < 5.0  # first order in h
    # Exact integration of the kappa part beats plain Euler on a coarse grid.
    assert _adjoint_error(10, True) < 0.6 * _adjoint_error(10, False)


def _achieved_mean(k, exact_kappa):
    """Mean of the sampler driven by the control implied by the lean adjoint (v - v_base = -eta a)."""
    coefs = memoryless_coefficients(num_steps=k)
    adj, _ = lean_adjoint(base, jnp.zeros((k + 1, 2)), -LAM * jnp.asarray(C), coefs, exact_kappa=exact_kappa)
    eta = coefs.sigma**2 / 2
    # eta a -> -lambda C c as t -> 0 (continuous limit); slot 0 is only used by the first step.
    shift = (-eta[:, None] * adj).at[0].set(LAM * COV @ C)

    def tuned(p, x, t):
        return base(x, t) + p[jnp.round(t * k).astype(jnp.int32)]

    # The sampler is linear for Gaussian data: the noise-free path from 0 is the mean.
    return memoryless_solve(tuned, shift, jnp.zeros((1, 2)), jnp.zeros((1, k, 2)), coefficients=coefs)[0]


def test_achieved_tilt_matches_closed_form(x64):
    target = MU + LAM * COV @ C
    m_exact = jax.jit(lambda: _achieved_mean(40, True))()
    m_euler = jax.jit(lambda: _achieved_mean(40, False))()
    shift = np.linalg.norm(LAM * COV @ C)
    assert np.linalg.norm(m_exact - target) < 0.01 * shift
    assert np.linalg.norm(m_exact - target) < np.linalg.norm(m_euler - target)


def test_loss_vanishes_at_the_implied_control(x64):
    k = 12
    coefs = memoryless_coefficients(num_steps=k)
    traj = jax.random.normal(jax.random.key(1), (3, k + 1, 2))
    adj, vb = jax.jit(jax.vmap(lambda p: lean_adjoint(base, p, -jnp.asarray(C), coefs)))(traj)
    eta = coefs.sigma**2 / 2
    shift = -eta[None, :, None] * adj

    def tuned(p, x, t):
        return base(x, t) + p[jnp.round(t * k).astype(jnp.int32)]

    idx = jnp.arange(1, k)
    batch = AdjointMatchingBatch(traj, adj, vb, idx)
    loss = jax.jit(lambda p: adjoint_matching_loss(p, batch, None, velocity_fn=tuned, coefficients=coefs)[0])
    # The shift is the same for every path (linear reward): one table is the optimal field.
    assert float(loss(shift[0])) < 1e-20
    assert float(loss(jnp.zeros_like(shift[0]))) > 1.0


def test_fine_tunes_gaussian_to_the_tilt(optax_promotion):
    field = lambda p, x, t: gaussian_velocity(x, t, p, COV)
    kernel = adjoint_matching(field, base, lambda x, _: jnp.asarray(C, x.dtype) @ x, optax.adam(0.05), 2,
                              temperature=1 / LAM, batch_size=64, num_steps=20)
    state = kernel.init(jnp.asarray(MU, jnp.float32))
    step = jax.jit(kernel.step)
    for i in range(150):
        state, info = step(state, jax.random.key(i))
    np.testing.assert_allclose(state.params, MU + LAM * COV @ C, atol=0.05)
    assert np.isfinite(info.loss) and info.nonfinite == 0


def test_fine_tunes_mixture_to_reweighted_components(optax_promotion):
    w = np.array([0.5, 0.5])
    means = np.array([[-1.5, 0.0], [1.5, 0.0]])
    covs = np.array([np.eye(2) * 0.3, np.eye(2) * 0.3])
    c = np.array([0.5, 0.0])
    base_mix = lambda x, t: gaussian_mixture_velocity(x, t, w, means, covs)
    field = lambda p, x, t: gaussian_mixture_velocity(x, t, jax.nn.softmax(p["logits"]), p["means"], covs)
    kernel = adjoint_matching(field, base_mix, lambda x, _: jnp.asarray(c, x.dtype) @ x, optax.adam(0.05), 2,
                              batch_size=128, num_steps=20, loss_timesteps=10)
    params = {"logits": jnp.zeros(2), "means": jnp.asarray(means, jnp.float32)}
    state = kernel.init(params)
    step = jax.jit(kernel.step)
    for i in range(250):
        state, _ = step(state, jax.random.key(i))
    w_star, m_star, _ = tilt_gaussian_mixture(w, means, covs, c)
    np.testing.assert_allclose(jax.nn.softmax(state.params["logits"]), w_star, atol=0.05)
    np.testing.assert_allclose(state.params["means"], m_star, atol=0.1)


def test_loss_weights_and_time_subsets(x64):
    """Uniform sample weights give the plain average; m random interior times are rescaled by
    (K - 1) / m, so the sum over all of them, split in two halves, averages to the full loss."""
    k = 9
    coefs = memoryless_coefficients(num_steps=k)
    keys = jax.random.split(jax.random.key(2), 3)
    traj, adj, vb = (jax.random.normal(kk, (4, k + 1, 2)) for kk in keys)
    tuned = lambda p, x, t: base(x, t) + p
    loss = jax.jit(lambda p, b: adjoint_matching_loss(p, b, None, velocity_fn=tuned, coefficients=coefs)[0])
    p = jnp.array([0.3, -0.2])
    full = loss(p, AdjointMatchingBatch(traj, adj, vb, jnp.arange(1, k)))
    weighted = loss(p, AdjointMatchingBatch(traj, adj, vb, jnp.arange(1, k), jnp.full((4,), 0.25)))
    np.testing.assert_allclose(weighted, full, rtol=1e-12)
    halves = [loss(p, AdjointMatchingBatch(traj, adj, vb, idx)) for idx in (jnp.arange(1, 5), jnp.arange(5, 9))]
    np.testing.assert_allclose(0.5 * (halves[0] + halves[1]), full, rtol=1e-12)
    # All weight on one path: that path's loss alone.
    one = loss(p, AdjointMatchingBatch(traj, adj, vb, jnp.arange(1, k), jnp.eye(4)[2]))
    alone = loss(p, AdjointMatchingBatch(traj[2:3], adj[2:3], vb[2:3], jnp.arange(1, k)))
    np.testing.assert_allclose(one, alone, rtol=1e-12)


def test_fit_adjoint_matching_resumes_exactly(tmp_path, optax_promotion):
    field = lambda p, x, t: gaussian_velocity(x, t, p, COV)
    reward = lambda x, s: s * (jnp.asarray(C, x.dtype) @ x)
    kernel = adjoint_matching(field, base, reward, optax.adam(0.05), 2, batch_size=16, num_steps=6,
                              example_reward_params=jnp.asarray(1.0))
    scale = lambda i: jnp.asarray(1.0 + 0.1 * i, jnp.float32)
    params = jnp.asarray(MU, jnp.float32)
    run = lambda n, **kw: fit_adjoint_matching(jax.random.key(5), kernel, params, num_steps=n, reward_params=scale,
                                               progress=False, config={"lr": 0.05}, **kw)
    straight = run(4, eval_fn=lambda p: jnp.sum(p), eval_every=2)
    ckpt = tmp_path / "am.ckpt"
    run(2, checkpoint_path=ckpt, checkpoint_every=1)
    resumed = run(4, checkpoint_path=ckpt)
    np.testing.assert_array_equal(straight.state.params, resumed.state.params)
    np.testing.assert_array_equal(straight.history["loss"], resumed.history["loss"])
    assert set(straight.history) >= {"loss", "reward", "grad_norm", "adjoint_norm", "nonfinite", "ess"}
    assert [s for s, _ in straight.evaluations] == [2, 4]
    with pytest.raises(ValueError, match="config"):
        fit_adjoint_matching(jax.random.key(5), kernel, params, num_steps=4, reward_params=scale, progress=False,
                             config={"lr": 0.1}, checkpoint_path=ckpt)


def test_kernel_options_and_info(optax_promotion):
    field = lambda p, x, t: base(x, t) + p
    kernel = adjoint_matching(field, base, lambda x, _: jnp.sum(x), optax.sgd(0.0), 2, batch_size=8,
                              num_steps=10, loss_timesteps=3, loss_clip=1e-3)
    state, info = jax.jit(kernel.step)(kernel.init(jnp.zeros(2)), jax.random.key(0))
    # Every term is clipped, so the loss is the clip times the rescaled number of terms.
    np.testing.assert_allclose(info.loss, 1e-3 * 9, rtol=1e-5)
    np.testing.assert_allclose(info.grad_norm, 0.0)
    assert int(state.step) == 1


def test_nonfinite_reward_is_counted_and_raised_when_checked(optax_promotion):
    field = lambda p, x, t: base(x, t) + p
    reward = lambda x, _: jnp.log(x[0])  # NaN for x[0] < 0
    kernel = adjoint_matching(field, base, reward, optax.adam(1e-3), 2, batch_size=16, num_steps=4)
    _, info = jax.jit(kernel.step)(kernel.init(jnp.zeros(2)), jax.random.key(0))
    assert int(info.nonfinite) > 0
    checked = adjoint_matching(field, base, reward, optax.adam(1e-3), 2, batch_size=16, num_steps=4, checked=True)
    with pytest.raises(Exception, match="non-finite"):
        checked.step(checked.init(jnp.zeros(2)), jax.random.key(0))


def test_bad_input():
    field = lambda p, x, t: base(x, t) + p
    reward = lambda x, _: jnp.sum(x)
    with pytest.raises(ValueError, match="temperature"):
        adjoint_matching(field, base, reward, optax.adam(1e-3), 2, temperature=0.0)
    with pytest.raises(ValueError, match="loss_timesteps"):
        adjoint_matching(field, base, reward, optax.adam(1e-3), 2, num_steps=5, loss_timesteps=5)
    kernel = adjoint_matching(field, base, reward, optax.adam(1e-3), 3)
    with pytest.raises(ValueError, match="velocity_fn"):
        kernel.init(jnp.zeros(2))
    kernel = adjoint_matching(field, base, lambda x, _: x, optax.adam(1e-3), 2)
    with pytest.raises(ValueError, match="reward_fn"):
        kernel.init(jnp.zeros(2))

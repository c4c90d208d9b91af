"""Per-sample contexts and event shapes through samplers, lean adjoint, loss and kernels."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tailjax.flows import (
    AdjointMatchingBatch, adjoint_matching_loss, exp_ft, flow_matching_loss, gaussian_velocity, lean_adjoint,
    memoryless_coefficients, memoryless_sample, memoryless_solve, ode_sample_and_log_prob, path_log_weight,
)

MEANS = np.array([[-2.0, 0.0], [0.0, 0.0], [3.0, 1.0]])  # one mean per class
COV = np.eye(2)


def cond_field(params, x, t, c):
    """Exact velocity of N(params[c], I): a class-conditional Gaussian flow."""
    return gaussian_velocity(x, t, jnp.asarray(params, x.dtype)[c], COV)


def image_field(params, x, t):
    """The exact N(params, I) field on (4, 4, 1) images, through the flattened event."""
    return gaussian_velocity(x.reshape(-1), t, params, jnp.eye(16)).reshape(x.shape)


def test_memoryless_sampler_passes_each_sample_its_context(x64):
    labels = jnp.arange(3000) % 3
    x = jax.jit(lambda k: memoryless_sample(k, cond_field, MEANS, 3000, 2, context=labels, num_steps=20))(
        jax.random.key(0))
    for c in range(3):
        np.testing.assert_allclose(x[labels == c].mean(0), MEANS[c], atol=0.1)


def test_image_events_equal_the_flattened_computation(x64):
    """Samplers, path weights, lean adjoint and loss on (4, 4, 1) events are the flat ones reshaped."""
    n, k, mean = 3, 6, jnp.linspace(-1.0, 1.0, 16)
    flat_field = lambda p, x, t: gaussian_velocity(x, t, p, jnp.eye(16))
    coefs = memoryless_coefficients(num_steps=k)
    x0 = jax.random.normal(jax.random.key(1), (n, 4, 4, 1))
    noise = jax.random.normal(jax.random.key(2), (n, k, 4, 4, 1))

    @jax.jit
    def run(x0, noise):
        img = memoryless_solve(image_field, mean, x0, noise, coefficients=coefs, return_trajectory=True)
        flat = memoryless_solve(flat_field, mean, x0.reshape(n, 16), noise.reshape(n, k, 16), coefficients=coefs,
                                return_trajectory=True)
        base_img = lambda x, t: image_field(0.0 * mean, x, t)
        base_flat = lambda x, t: flat_field(0.0 * mean, x, t)
        lw = jax.vmap(lambda p: path_log_weight(image_field, mean, base_img, p, coefs))(img[1])
        lw_flat = jax.vmap(lambda p: path_log_weight(flat_field, mean, base_flat, p, coefs))(flat[1])
        a_end = -jnp.ones((n, 4, 4, 1))
        adj, vb = jax.vmap(lambda p, a: lean_adjoint(base_img, p, a, coefs))(img[1], a_end)
        adj_f, vb_f = jax.vmap(lambda p, a: lean_adjoint(base_flat, p, a, coefs))(flat[1], a_end.reshape(n, 16))
        idx = jnp.arange(1, k)
        loss = adjoint_matching_loss(mean, AdjointMatchingBatch(img[1], adj, vb, idx), velocity_fn=image_field,
                                     coefficients=coefs)[0]
        loss_f = adjoint_matching_loss(mean, AdjointMatchingBatch(flat[1], adj_f, vb_f, idx),
                                       velocity_fn=flat_field, coefficients=coefs)[0]
        return img, flat, (lw, lw_flat), (adj, adj_f), (loss, loss_f)

    img, flat, lws, adjs, losses = run(x0, noise)
    assert img[0].shape == (n, 4, 4, 1) and img[1].shape == (n, k + 1, 4, 4, 1)
    np.testing.assert_allclose(img[1].reshape(n, k + 1, 16), flat[1], rtol=1e-12)
    np.testing.assert_allclose(lws[0], lws[1], rtol=1e-10)
    np.testing.assert_allclose(adjs[0].reshape(n, k + 1, 16), adjs[1], rtol=1e-12)
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-12)
    # The ODE log-density of image events uses the flattened Jacobian.
    _, lp = jax.jit(lambda z: ode_sample_and_log_prob(image_field, mean, z, num_steps=4))(x0)
    _, lp_f = jax.jit(lambda z: ode_sample_and_log_prob(flat_field, mean, z, num_steps=4))(x0.reshape(n, 16))
    np.testing.assert_allclose(lp, lp_f, rtol=1e-10)


def test_flow_matching_loss_with_contexts(x64):
    data = jnp.asarray(MEANS)[jnp.arange(6) % 3] + jax.random.normal(jax.random.key(3), (6, 2))
    labels = jnp.arange(6) % 3
    loss = jax.jit(jax.vmap(lambda p, k: flow_matching_loss(p, (data, labels), k, velocity_fn=cond_field)[0],
                            in_axes=(None, 0)))
    keys = jax.random.split(jax.random.key(5), 64)
    # The exact class-conditional field beats the same field with the classes permuted.
    exact, wrong = float(loss(jnp.asarray(MEANS), keys).mean()), float(loss(jnp.asarray(MEANS[::-1]), keys).mean())
    assert np.isfinite(exact) and exact < wrong


def test_conditional_exp_ft_reaches_each_class_tilt(optax_promotion):
    """EXP-FT with r(x, c) = s_c (x1 + x2): class c's N(m_c, I) goes to N(m_c + s_c (1, 1) / alpha, I)."""
    scale = jnp.array([1.0, -0.5, 0.0])
    base = lambda x, t, c: gaussian_velocity(x, t, jnp.asarray(MEANS, x.dtype)[c], COV)
    reward = lambda x, c: scale.astype(x.dtype)[c] * (x[0] + x[1])
    kernel = exp_ft(cond_field, base, reward, optax.adam(0.05), 2, temperature=1.0, batch_size=96, num_steps=16,
                    contexts=jnp.arange(3))
    state = kernel.init(jnp.asarray(MEANS, jnp.float32))
    step = jax.jit(kernel.step)
    for i in range(150):
        state, info = step(state, jax.random.key(i))
    target = MEANS + np.asarray(scale)[:, None] * np.ones(2)
    np.testing.assert_allclose(state.params, target, atol=0.12)
    assert int(info.nonfinite) == 0

"""Generative ambiguity sets: a likelihood-based generative model P_theta, its trajectory
log-likelihood, and its reconstruction loss J(theta, P_0) on nominal data.

GAS-DRO searches {P_theta : J(theta, P_0) <= epsilon}. An :class:`AmbiguitySet` bundles the
three pure functions the search needs:

- ``sample(key, theta, n) -> (samples, trajectories)``: ``samples`` is the batch (pytree,
  leading axis n) the predictor's loss sees; ``trajectories`` is what ``log_prob`` scores.
- ``log_prob(theta, trajectories) -> (n,)``: log-likelihood of each trajectory under theta
  (for a DDPM the last T' reverse steps, for a VAE the decoder density of x given z).
- ``reconstruction_loss(theta, data, key) -> scalar``: J(theta, P_0) on a nominal batch
  (arguments in the library's loss order; the value alone, no aux).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tailjax._checks import check_int, is_concrete

from tailjax.nn import ddpm as _ddpm
from tailjax.nn import vae as _vae

__all__ = [
    "AmbiguitySet",
    "DDPMTrajectory",
    "VAETrajectory",
    "ddpm_ambiguity_set",
    "vae_ambiguity_set",
]


class AmbiguitySet(NamedTuple):
    sample: Callable[[jax.Array, Any, int], tuple[Any, Any]]
    log_prob: Callable[[Any, Any], jax.Array]
    reconstruction_loss: Callable[[Any, Any, jax.Array], jax.Array]


class DDPMTrajectory(NamedTuple):
    states: jax.Array  # (n, T' + 1, *shape): x_{T'}, ..., x_0
    cond: jax.Array | None  # (n, c) or None


class VAETrajectory(NamedTuple):
    x: jax.Array  # (n, *shape) decoder draws
    z: jax.Array  # (n, latent_dim)
    cond: jax.Array | None


def _sample_conds(cond_sampler, key, n):
    if cond_sampler is None:
        return None
    return jax.vmap(cond_sampler)(jax.random.split(key, n))


def ddpm_ambiguity_set(
    apply_fn: Callable,
    schedule: _ddpm.DDPMSchedule,
    shape: tuple[int, ...],
    last_steps: int = 15,
    weighting: str | jax.Array = "simple",
    cond_sampler: Callable[[jax.Array], jax.Array] | None = None,
    to_sample: Callable[[jax.Array, Any], Any] | None = None,
    dtype: Any = jnp.float32,
    *,
    frozen_params: Any = None,
    reconstruction_steps: str = "last",
    stratified: bool = True,
    policy_std: float | None = None,
) -> AmbiguitySet:
    """Ambiguity set of a DDPM with noise network ``apply_fn(theta, x, t, cond)``.

    Args:
      shape: shape of one data point x_0.
      last_steps: T', the reverse steps whose likelihood enters the policy ratio.
      weighting: J_DM's iota_t (``"simple"``, ``"elbo"`` or an array of shape (T,)).
      cond_sampler: for a conditional model, ``cond_sampler(key) -> cond`` draws the
        conditioning vector of one sample (e.g. a one-hot label from the class frequencies);
        nominal data is then the pair ``(x, cond)``.
      to_sample: ``to_sample(x0, cond) -> sample`` maps one generated point to what the
        predictor's loss takes (default: ``x0``, or ``(x0, cond)`` when conditional).
      frozen_params: parameters of the reverse steps T..T'+1 (the paper: the pre-trained
        theta_0, so the adversary acts on the last T' steps only and the trajectory ratio is
        exact); None runs every step with the adversary's theta.
      reconstruction_steps: the steps J(theta, P_0) averages over: ``"last"`` (t <= T', the
        steps the adversary acts on; the paper) or ``"all"`` (t <= T).
      stratified: spread each J batch evenly over its steps (:func:`tailjax.nn.ddpm.dm_loss`).
      policy_std: a constant reverse standard deviation sigma for the last T' steps (the
        paper's sampling variance), or None for the schedule's sigma_t.
    """
    last_steps = check_int(last_steps, "last_steps")
    if not 1 <= last_steps <= schedule.num_steps:
        raise ValueError(f"last_steps must lie in [1, {schedule.num_steps}], got {last_steps}")
    if reconstruction_steps not in ("last", "all"):
        raise ValueError(f"reconstruction_steps must be 'last' or 'all', got {reconstruction_steps!r}")
    _ddpm._check_policy_std(policy_std)
    _ddpm.dm_loss_weights(schedule, weighting)  # refuses an unknown weighting now, not at the first J
    max_step = last_steps if reconstruction_steps == "last" else None
    if to_sample is None:
        to_sample = (lambda x, c: x) if cond_sampler is None else (lambda x, c: (x, c))

    def sample(key, theta, n):
        k_c, k_x = jax.random.split(key)
        cond = _sample_conds(cond_sampler, k_c, n)
        theta = jax.lax.stop_gradient(theta)
        prefix = None if frozen_params is None else jax.lax.stop_gradient(frozen_params)
        one = lambda k, c: _ddpm.ddpm_sample(k, apply_fn, theta, schedule, shape, c, last_steps, dtype,
                                             prefix_params=prefix, policy_std=policy_std)
        keys = jax.random.split(k_x, n)
        if cond is None:
            x0, states = jax.vmap(lambda k: one(k, None))(keys)
            samples = jax.vmap(lambda x: to_sample(x, None))(x0)
        else:
            x0, states = jax.vmap(one)(keys, cond)
            samples = jax.vmap(to_sample)(x0, cond)
        return samples, DDPMTrajectory(states, cond)

    def log_prob(theta, traj):
        fn = lambda s, c: _ddpm.trajectory_log_prob(apply_fn, theta, schedule, s, c, policy_std)
        if traj.cond is None:
            return jax.vmap(lambda s: fn(s, None))(traj.states)
        return jax.vmap(fn)(traj.states, traj.cond)

    def reconstruction_loss(theta, data, key):
        return _ddpm.dm_loss(theta, data, key, apply_fn=apply_fn, schedule=schedule, weighting=weighting,
                             max_step=max_step, stratified=stratified)[0]

    return AmbiguitySet(sample, log_prob, reconstruction_loss)


def vae_ambiguity_set(
    vae: _vae.VAE,
    vae_params: Any,
    cond_sampler: Callable[[jax.Array], jax.Array] | None = None,
    to_sample: Callable[[jax.Array, Any], Any] | None = None,
    *,
    anchors: Any = None,
) -> AmbiguitySet:
    """The VAE ambiguity set of GAS-DRO's Appendix B: perturb the decoder, freeze the encoder.

    theta is the decoder subtree (``tailjax.nn.vae.split_params(vae_params)[1]`` is the
    nominal point). P_theta draws z ~ N(0, I), x ~ N(g_theta(z, c), obs_std^2 I); the policy
    log-likelihood is log N(x; g_theta(z, c), obs_std^2 I) with z held fixed; J is the
    reconstruction loss E_{x~P_0} E_{z~q_phi(z|x)} ||x - g_theta(z)||^2 / dim with the
    encoder phi frozen at its nominal value.

    ``anchors`` (real data: ``x`` (m, *shape) or ``(x, cond)``) switches sampling to
    encode-perturb-decode: each draw picks a real point, z ~ q_phi(z | x, c) with the frozen
    encoder, x' ~ N(g_theta(z, c), obs_std^2 I), and keeps the real point's ``c`` (e.g. its
    label) instead of drawing one from ``cond_sampler``; they must be finite.
    """
    encoder, _ = _vae.split_params(vae_params)
    if to_sample is None:
        conditional = cond_sampler is not None or isinstance(anchors, (tuple, list))
        to_sample = (lambda x, c: (x, c)) if conditional else (lambda x, c: x)
    if anchors is not None:
        a_x, a_c = anchors if isinstance(anchors, (tuple, list)) else (anchors, None)
        a_x = jnp.asarray(a_x)
        a_c = None if a_c is None else jnp.asarray(a_c)
        if a_x.ndim != len(vae.data_shape) + 1 or a_x.shape[1:] != tuple(vae.data_shape) or a_x.shape[0] == 0:
            raise ValueError(f"anchors must hold a non-empty batch of shape (m, {tuple(vae.data_shape)}), "
                             f"got {a_x.shape}")
        if is_concrete(a_x) and not np.all(np.isfinite(np.asarray(a_x))):
            raise ValueError("anchors hold NaN or infinite values")

    def sample(key, theta, n):
        k_c, k_x = jax.random.split(key)
        params = _vae.merge_params(encoder, jax.lax.stop_gradient(theta))
        keys = jax.random.split(k_x, n)
        if anchors is not None:
            idx = jax.random.randint(k_c, (n,), 0, a_x.shape[0])
            cond = None if a_c is None else a_c[idx]
            one = lambda k, xi, ci: _vae.vae_encode_decode_sample(k, vae, params, xi, ci)
            if cond is None:
                x, z = jax.vmap(lambda k, xi: one(k, xi, None))(keys, a_x[idx])
            else:
                x, z = jax.vmap(one)(keys, a_x[idx], cond)
        else:
            cond = _sample_conds(cond_sampler, k_c, n)
            if cond is None:
                x, z = jax.vmap(lambda k: _vae.vae_sample(k, vae, params))(keys)
            else:
                x, z = jax.vmap(lambda k, c: _vae.vae_sample(k, vae, params, c))(keys, cond)
        if cond is None:
            samples = jax.vmap(lambda xi: to_sample(xi, None))(x)
        else:
            samples = jax.vmap(to_sample)(x, cond)
        return samples, VAETrajectory(x, z, cond)

    def log_prob(theta, traj):
        params = _vae.merge_params(encoder, theta)
        mean = vae.apply(params, traj.z, traj.cond, method=_vae.VAE.decode)
        d = traj.x[0].size
        r = (traj.x - mean).reshape(traj.x.shape[0], -1)
        const = d * (jnp.log(vae.obs_std) + 0.5 * jnp.log(2.0 * jnp.pi))
        return -0.5 * jnp.sum(r**2, axis=-1) / vae.obs_std**2 - const

    def reconstruction_loss(theta, data, key):
        params = _vae.merge_params(jax.lax.stop_gradient(encoder), theta)
        return _vae.reconstruction_loss(params, data, key, vae=vae)[0]

    return AmbiguitySet(sample, log_prob, reconstruction_loss)

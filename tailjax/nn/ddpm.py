"""Denoising diffusion probabilistic models (Ho et al., 2020): schedule, noise networks,
the training loss J_DM, ancestral sampling, and reverse-trajectory log-probabilities.

Conventions. Steps are numbered t = 1..T and stored at index t - 1. The forward process is
q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) with abar_t = prod_{s<=t} (1 - beta_s).
The reverse process is p_theta(x_{t-1} | x_t) = N(mu_theta(x_t, t), sigma_t^2 I) with

    mu_theta(x_t, t) = alpha_t^{-1/2} (x_t - beta_t / sqrt(1 - abar_t) * eps_theta(x_t, t)),

the form that stays finite in float32 when abar_t underflows to 0 (the x_0-prediction form
divides by sqrt(abar_t) and does not). Noise is added at every step, t = 1 included, so the
log-density of a whole reverse trajectory is finite (sigma_1 = sqrt(beta_1) is tiny).

Every function is written for one sample (``x`` of the data's own shape, no batch axis) and
vmapped at the edge; noise networks take ``(x, t, cond)`` and accept leading batch axes.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from tailjax._checks import check_float_dtype, check_int, is_concrete, nan_where, traced_below_zero

__all__ = [
    "DDPMSchedule",
    "make_schedule",
    "timestep_embedding",
    "MLPNoiseNet",
    "ConvNoiseNet",
    "q_sample",
    "dm_loss_weights",
    "dm_loss",
    "reverse_mean",
    "ddpm_sample",
    "step_log_probs",
    "trajectory_log_prob",
]

NoiseFn = Callable[[Any, Array, Array, Any], Array]  # apply(params, x, t, cond) -> eps


class DDPMSchedule(NamedTuple):
    """Variance schedule; every field has shape (T,), index t - 1 for step t."""

    betas: Array
    alphas: Array
    alpha_bars: Array
    sigmas: Array  # reverse-process standard deviations

    @property
    def num_steps(self) -> int:
        return self.betas.shape[0]


def make_schedule(
    num_steps: int = 500,
    kind: str = "linear",
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    variance: str = "beta",
    dtype: Any = jnp.float32,
) -> DDPMSchedule:
    """Build a schedule of ``num_steps`` steps.

    Args:
      kind: ``"linear"`` (Ho et al.), ``"quadratic"`` (linear in sqrt(beta)) or ``"cosine"``
        (Nichol & Dhariwal, betas clipped at 0.999; beta_start/beta_end unused).
      variance: reverse variance sigma_t^2: ``"beta"`` (beta_t) or ``"posterior"``
        (beta_tilde_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t, with beta_tilde_1 set to
        beta_tilde_2 so that step 1 keeps a proper density).
    """
    num_steps = check_int(num_steps, "num_steps", minimum=2)
    check_float_dtype(dtype)
    if not 0.0 < beta_start <= beta_end < 1.0:
        raise ValueError(
            f"beta_start and beta_end must satisfy 0 < beta_start <= beta_end < 1, "
            f"got {beta_start}, {beta_end}"
        )
    t = jnp.arange(num_steps, dtype=jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
    if kind == "linear":
        betas = beta_start + (beta_end - beta_start) * t / (num_steps - 1)
    elif kind == "quadratic":
        betas = (jnp.sqrt(beta_start) + (jnp.sqrt(beta_end) - jnp.sqrt(beta_start)) * t / (num_steps - 1)) ** 2
    elif kind == "cosine":
        s = 0.008
        grid = jnp.arange(num_steps + 1).astype(t.dtype) / num_steps
        f = jnp.cos((grid + s) / (1 + s) * jnp.pi / 2) ** 2
        betas = jnp.clip(1.0 - f[1:] / f[:-1], 1e-8, 0.999)
    else:
        raise ValueError(f"kind must be 'linear', 'quadratic' or 'cosine', got {kind!r}")
    betas = betas.astype(dtype)
    alphas = 1.0 - betas
    alpha_bars = jnp.cumprod(alphas)
    if variance == "beta":
        var = betas
    elif variance == "posterior":
        prev = jnp.concatenate([jnp.ones((1,), dtype), alpha_bars[:-1]])
        var = (1.0 - prev) / (1.0 - alpha_bars) * betas
        var = var.at[0].set(var[1])
    else:
        raise ValueError(f"variance must be 'beta' or 'posterior', got {variance!r}")
    return DDPMSchedule(betas, alphas, alpha_bars, jnp.sqrt(var))


def _floating(x: Array) -> Array:
    """``x`` itself if it is floating, else cast to float32."""
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)


def timestep_embedding(
    t: Array, dim: int, max_period: float = 10_000.0, dtype: Any = jnp.float32
) -> Array:
    """Transformer-style embedding of (integer or real) steps ``t``: (...,) -> (..., dim)."""
    dim = check_int(dim, "dim")
    if dim < 2 or dim % 2:
        raise ValueError(f"dim must be an even integer >= 2, got {dim}")
    half = dim // 2
    freqs = jnp.exp(-jnp.log(max_period) * jnp.arange(half, dtype=dtype) / half)
    args = jnp.asarray(t).astype(dtype)[..., None] * freqs
    return jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)


class MLPNoiseNet(nn.Module):
    """eps_theta for vectors: x (..., d), t (...,), cond (..., c) or None -> (..., d)."""

    features: Sequence[int] = (128, 128, 128)
    time_dim: int = 32

    @nn.compact
    def __call__(self, x, t, cond=None):
        h = _floating(x)
        temb = timestep_embedding(jnp.broadcast_to(t, x.shape[:-1]), self.time_dim, dtype=h.dtype)
        temb = nn.Dense(self.time_dim)(nn.silu(nn.Dense(self.time_dim)(temb)))
        parts = [h, temb] + ([cond.astype(h.dtype)] if cond is not None else [])
        h = jnp.concatenate(parts, axis=-1)
        for width in self.features:
            h = nn.silu(nn.Dense(width)(h) + nn.Dense(width, use_bias=False)(temb))
        return nn.Dense(x.shape[-1], kernel_init=nn.initializers.zeros)(h).astype(x.dtype)


class ConvNoiseNet(nn.Module):
    """eps_theta for sequences: x (..., L) (or (..., L, C) with ``in_channels=C``), t (...,).

    Residual 1-D convolutions; the time embedding (and ``cond``, a vector) shifts every
    channel of every block. Output has the shape of ``x``.
    """

    channels: int = 32
    depth: int = 3
    kernel_size: int = 5
    time_dim: int = 32
    in_channels: int | None = None

    @nn.compact
    def __call__(self, x, t, cond=None):
        channels, depth, kernel_size = (check_int(getattr(self, name), name, minimum=low)
                                        for name, low in (("channels", 1), ("depth", 0), ("kernel_size", 1)))
        h = x[..., None] if self.in_channels is None else x
        lead = h.shape[:-2]
        h = _floating(h.reshape((-1,) + h.shape[-2:]))  # one batch axis: GroupNorm per row
        temb = timestep_embedding(jnp.broadcast_to(t, lead).reshape(-1), self.time_dim, dtype=h.dtype)
        if cond is not None:
            c = jnp.broadcast_to(cond, lead + cond.shape[-1:]).reshape(-1, cond.shape[-1])
            temb = jnp.concatenate([temb, c.astype(h.dtype)], axis=-1)
        temb = nn.silu(nn.Dense(self.time_dim)(temb))
        h = nn.Conv(channels, (kernel_size,))(h)
        for _ in range(depth):
            shift = nn.Dense(channels)(temb)[..., None, :]
            r = nn.silu(nn.GroupNorm(num_groups=min(8, channels))(h) + shift)
            h = h + nn.Conv(channels, (kernel_size,))(r)
        out_ch = 1 if self.in_channels is None else self.in_channels
        out = nn.Conv(out_ch, (1,), kernel_init=nn.initializers.zeros)(nn.silu(h))
        out = out.reshape(lead + out.shape[1:])
        return (out[..., 0] if self.in_channels is None else out).astype(x.dtype)


def q_sample(schedule: DDPMSchedule, x0: Array, t: Array, noise: Array) -> Array:
    """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise, for one sample and integer t in 1..T."""
    ab = schedule.alpha_bars[t - 1]
    return jnp.sqrt(ab) * x0 + jnp.sqrt(1.0 - ab) * noise


def dm_loss_weights(schedule: DDPMSchedule, weighting: str | Array = "simple") -> Array:
    """Per-step weights iota_t of J_DM: ``"simple"`` (all 1) or ``"elbo"``.

    The ELBO weight is iota_t = beta_t^2 / (2 sigma_t^2 alpha_t (1 - abar_t)), which makes
    J_DM the eps-parameterised KL terms of the variational bound (per coordinate).
    An array of shape (T,) is returned as is.
    """
    if isinstance(weighting, str):
        if weighting == "simple":
            return jnp.ones_like(schedule.betas)
        if weighting == "elbo":
            s = schedule
            return s.betas**2 / (2.0 * s.sigmas**2 * s.alphas * (1.0 - s.alpha_bars))
        raise ValueError(f"weighting must be 'simple', 'elbo' or an array, got {weighting!r}")
    w = jnp.asarray(weighting)
    if w.shape != schedule.betas.shape:
        raise ValueError(f"weighting must have shape {schedule.betas.shape}, got {w.shape}")
    return w


def _dm_loss_single(apply_fn, params, key, x0, t, schedule, weights, cond):
    noise = jax.random.normal(key, x0.shape, x0.dtype)
    eps = apply_fn(params, q_sample(schedule, x0, t, noise), t, cond)
    return weights[t - 1] * jnp.mean((noise - eps) ** 2)


def _draw_steps(key: Array, n: int, max_step: int, stratified: bool) -> Array:
    """n steps in 1..max_step: i.i.d. uniform, or stratified (step 1 + (i + u) mod max_step
    for a uniform offset u and a random order, so every step gets n // max_step or one more)."""
    if not stratified:
        return jax.random.randint(key, (n,), 1, max_step + 1)
    k_off, k_perm = jax.random.split(key)
    offset = jax.random.randint(k_off, (), 0, max_step)
    return 1 + jax.random.permutation(k_perm, (jnp.arange(n) + offset) % max_step)


def dm_loss(
    params: Any,
    batch: Float[Array, "n ..."] | tuple[Float[Array, "n ..."], Float[Array, "n c"]],
    key: PRNGKeyArray,
    *,
    apply_fn: NoiseFn,
    schedule: DDPMSchedule,
    weighting: str | Array = "simple",
    max_step: int | None = None,
    stratified: bool = False,
) -> tuple[Float[Array, ""], dict]:
    """J_DM = E_{t, x_0, eps} iota_t ||eps - eps_theta(x_t, t)||^2 / dim (eq. (4)), as a loss
    ``(value, {})`` in the library's ``loss(params, batch, key)`` order.

    ``batch`` is ``x0`` (n, ...) or a pair ``(x0, cond)`` with ``cond`` (n, c) conditioning
    the network. One step t and one noise draw per sample; the squared error is averaged
    over coordinates. t is uniform on 1..T, or on 1..``max_step`` (GAS-DRO's J over the
    steps its adversary acts on, t <= T'); ``stratified=True`` spreads the batch evenly over
    the steps (same mean, less variance). ``functools.partial(dm_loss, apply_fn=...,
    schedule=...)`` trains a DDPM with :func:`tailjax.training.gradient_kernel`.
    """
    x0, cond = batch if isinstance(batch, (tuple, list)) else (batch, None)
    if jnp.ndim(x0) < 1 or jnp.size(x0) == 0:
        raise ValueError(f"batch x0 must hold a non-empty batch, got shape {jnp.shape(x0)}")
    T = schedule.num_steps
    top = T if max_step is None else check_int(max_step, "max_step")
    if not 1 <= top <= T:
        raise ValueError(f"max_step must lie in [1, {T}], got {max_step}")
    weights = dm_loss_weights(schedule, weighting).astype(x0.dtype)
    keys = jax.random.split(key, x0.shape[0])
    if stratified:
        ts = _draw_steps(jax.random.fold_in(key, 1), x0.shape[0], top, True)
    else:  # one key per sample for its step and its noise
        pairs = jax.vmap(jax.random.split)(keys)
        ts = jax.vmap(lambda k: jax.random.randint(k, (), 1, top + 1))(pairs[:, 0])
        keys = pairs[:, 1]
    fn = lambda k, x, t, c: _dm_loss_single(apply_fn, params, k, x, t, schedule, weights, c)
    if cond is None:
        losses = jax.vmap(lambda k, x, t: fn(k, x, t, None))(keys, x0, ts)
    else:
        losses = jax.vmap(fn)(keys, x0, ts, cond)
    return jnp.mean(losses), {}


def reverse_mean(schedule: DDPMSchedule, x_t: Array, t: Array, eps: Array) -> Array:
    """mu = alpha_t^{-1/2} (x_t - beta_t / sqrt(1 - abar_t) eps): finite when abar_t -> 0."""
    i = t - 1
    coef = schedule.betas[i] / jnp.sqrt(1.0 - schedule.alpha_bars[i])
    return (x_t - coef.astype(x_t.dtype) * eps) / jnp.sqrt(schedule.alphas[i]).astype(x_t.dtype)


def ddpm_sample(
    key: PRNGKeyArray,
    apply_fn: NoiseFn,
    params: Any,
    schedule: DDPMSchedule,
    shape: tuple[int, ...],
    cond: Array | None = None,
    last_steps: int = 0,
    dtype: Any = jnp.float32,
    prefix_params: Any = None,
    policy_std: float | None = None,
) -> Array | tuple[Array, Array]:
    """Ancestral sampling of one sample of ``shape`` under ``lax.scan``.

    Returns x_0, or with ``last_steps = T' > 0`` the pair (x_0, states) where states
    (T' + 1, *shape) holds x_{T'}, x_{T'-1}, ..., x_0: the part of the reverse trajectory
    whose log-probability :func:`trajectory_log_prob` scores. Vmap over keys for a batch.
    ``prefix_params`` runs the first T - T' steps (T..T'+1) with other parameters (GAS-DRO:
    the pre-trained theta_0, so that x_{T'} does not depend on the adversary's theta);
    ``policy_std`` replaces sigma_t by a constant in the last T' steps (the paper's sampling
    variance sigma); both default to the usual sampler. A traced ``policy_std <= 0`` gives NaN.
    """
    T = schedule.num_steps
    last_steps = check_int(last_steps, "last_steps")
    if not 0 <= last_steps <= T:
        raise ValueError(f"last_steps must lie in [0, {T}], got {last_steps}")
    bad_std = _check_policy_std(policy_std)
    k0, key = jax.random.split(key)
    x_T = jax.random.normal(k0, shape, dtype)
    head_params = params if prefix_params is None else prefix_params

    def body(p, std, x, inp):
        t, k = inp
        mu = reverse_mean(schedule, x, t, apply_fn(p, x, t, cond))
        sig = schedule.sigmas[t - 1] if std is None else jnp.asarray(std)
        x = mu + sig.astype(dtype) * jax.random.normal(k, shape, dtype)
        return x, x

    keys = jax.random.split(key, T)
    ts = jnp.arange(T, 0, -1)
    head = T - last_steps
    x, _ = jax.lax.scan(lambda c, i: (body(head_params, None, c, i)[0], None), x_T, (ts[:head], keys[:head]))
    if last_steps == 0:
        return x
    x_last = x
    x0, states = jax.lax.scan(lambda c, i: body(params, policy_std, c, i), x, (ts[head:], keys[head:]))
    return nan_where(bad_std, (x0, jnp.concatenate([x_last[None], states], axis=0)))


def _check_policy_std(policy_std: float | None) -> Any:
    """Raise for a concrete ``policy_std <= 0``; the "out of range" flag of a traced one."""
    if policy_std is None:
        return False
    if not is_concrete(policy_std):
        return traced_below_zero(policy_std, allow_zero=False)
    if not float(policy_std) > 0.0:
        raise ValueError(f"policy_std must be > 0 (or None for sigma_t), got {policy_std}")
    return False


def step_log_probs(
    apply_fn: NoiseFn,
    params: Any,
    schedule: DDPMSchedule,
    states: Float[Array, "k1 ..."],
    cond: Array | None = None,
    policy_std: float | None = None,
) -> Float[Array, " k"]:
    """log N(x_{t-1}; mu_theta(x_t, t), sigma_t^2 I) for t = T', ..., 1, one network call.

    ``states`` (T' + 1, *shape) as returned by :func:`ddpm_sample` with ``last_steps=T'``;
    ``policy_std`` (a constant sigma in place of sigma_t) as given to the sampler.
    """
    k = states.shape[0] - 1
    if k < 1:
        raise ValueError(f"states must hold at least two states, got shape {states.shape}")
    bad_std = _check_policy_std(policy_std)
    ts = jnp.arange(k, 0, -1)
    x_t, x_prev = states[:-1], states[1:]
    c = None if cond is None else jnp.broadcast_to(cond, (k,) + jnp.shape(cond))
    eps = apply_fn(params, x_t, ts, c)
    mu = jax.vmap(lambda x, t, e: reverse_mean(schedule, x, t, e))(x_t, ts, eps)
    sig = schedule.sigmas[ts - 1] if policy_std is None else jnp.full((k,), policy_std, states.dtype)
    sig = sig.astype(states.dtype)
    sig = sig.reshape((k,) + (1,) * (states.ndim - 1))
    z = (x_prev - mu) / sig
    d = x_prev[0].size
    log_norm = -0.5 * d * jnp.log(2.0 * jnp.pi) - d * jnp.log(sig.reshape(k))
    return nan_where(bad_std, log_norm - 0.5 * jnp.sum(z.reshape(k, -1) ** 2, axis=-1))


def trajectory_log_prob(
    apply_fn: NoiseFn,
    params: Any,
    schedule: DDPMSchedule,
    states: Float[Array, "k1 ..."],
    cond: Array | None = None,
    policy_std: float | None = None,
) -> Float[Array, ""]:
    """log P_theta(x_{0:T'} | x_{T'}) = sum_{t=1}^{T'} log p_theta(x_{t-1} | x_t).

    The earlier steps T..T'+1 and the prior on x_T are left out: ratios of two parameter
    values are exact over the whole trajectory when the earlier steps are run with fixed
    parameters (``ddpm_sample(prefix_params=theta_0)``), as in GAS-DRO.
    """
    return jnp.sum(step_log_probs(apply_fn, params, schedule, states, cond, policy_std))

"""The carbon-intensity forecasting task of GAS-DRO, under two labelled protocols.

- ``"today"`` (this library's earlier protocol): train on ERCOT 2021-22, every series scaled
  by the training range (test errors include the level shift between zones), an LSTM of 32
  units, an MLP noise network;
- ``"paper"`` (the paper's protocol as far as the data allow): train on CAISO 2023-24 as the
  stand-in for BANC (not in the data), test on CAISO's earlier years and the other zones, each
  set min-max scaled by its own range (the W1 distances between the scaled training values
  and each test set are reported), the small-data regime (window stride 40: about 438
  training windows; test stride 28: about 312 windows per zone-year), the stacked LSTM
  (128, 64) and the 1-D UNet noise network (128, 256, 256, 256).

Both hold one zone out of the tests as the out-of-distribution validation set on which
every method's hyper-parameters and early stopping are chosen (``ood_validation``, default
GB), and the end of each training year as an in-domain validation set. The generators act
on standardised windows. The inner problem is the paper's by default: reverse steps T..T'+1
frozen at theta_0, J over t <= T' with stratified t, T' matched to the paper's noise level.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.setups.dro.methods import Resources
from benchmarks.setups.dro.recipes import forecast_loss, persistence_mse, seasonal_naive_mse, train_ddpm, train_vae
from benchmarks.setups.dro.tasks import Setup, estimate_reconstruction, matched_last_steps
from tailjax import dro
from tailjax.nn import LSTMForecaster, MLPNoiseNet, ddpm
from tailjax.nn import vae as _vae
from tailjax.nn.forecasters import StackedLSTMForecaster
from tailjax.nn.unet1d import UNet1D

__all__ = ["PROTOCOLS", "carbon_setup", "reference_rows", "reconstruction_sd"]

PROTOCOLS = {
    "today": dict(train_zone="ERCOT", train_years=(2021, 2022), scaling="train", stride=1, test_stride=1,
                  predictor=(32,), noise_net="mlp", noise_features=(256, 256, 256)),
    "paper": dict(train_zone="CAISO", train_years=(2023, 2024), scaling="own", stride=40, test_stride=28,
                  predictor=(128, 64), noise_net="unet", noise_features=(128, 256, 256, 256)),
}


def reference_rows(tests: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Persistence and seasonal-naive (24 h) test MSE of every set: rows that need no learning."""
    return {"persistence": {k: persistence_mse(v) for k, v in tests.items()},
            "seasonal naive": {k: seasonal_naive_mse(v, 24) for k, v in tests.items()}}


def reconstruction_sd(recon, params, key, data, batch: int, reps: int = 32) -> float:
    """Standard deviation over keys of one J estimate on ``batch`` rows (the noise the dual
    step sees; compare with the budget delta)."""
    n = jax.tree_util.tree_leaves(data)[0].shape[0]
    idx = jax.random.randint(jax.random.fold_in(key, 1), (reps, min(batch, n)), 0, n)
    values = jax.jit(jax.vmap(lambda k, i: recon(params, jnp.asarray(data)[i], k)))(jax.random.split(key, reps), idx)
    return float(jnp.std(values))


def _noise_net(kind: str, features: Sequence[int]):
    if kind == "mlp":
        return MLPNoiseNet(tuple(features))
    if kind == "unet":
        return UNet1D(tuple(features))
    raise ValueError(f"noise_net must be 'mlp' or 'unet', got {kind!r}")


def carbon_setup(
    key: jax.Array,
    path=None,
    protocol: str = "today",
    window: int = 24,
    stride: int | None = None,
    test_stride: int | None = None,
    predictor: Sequence[int] | None = None,
    noise_net: str | None = None,
    noise_features: Sequence[int] | None = None,
    num_steps: int = 500,
    last_steps: int | None = None,
    generator_steps: int = 10_000,
    vae_steps: int = 5_000,
    budget_delta: float = 0.005,
    num_generated: int | None = None,
    baselines: bool = True,
    validation: float = 0.1,
    ood_validation: Sequence[str] = ("GB",),
    frozen_prefix: bool = True,
    reconstruction_steps: str = "last",
    policy_std: float | None = None,
    j_batch: int = 256,
    vae_ambiguity: bool = False,
) -> Setup:
    """Data, predictor, nominal generators and every method's resources for one protocol.

    Arguments left None take the protocol's value (:data:`PROTOCOLS`). ``last_steps=None``
    takes T' from :func:`matched_last_steps`; ``frozen_prefix``, ``reconstruction_steps`` and
    ``policy_std`` set the inner problem (:func:`tailjax.dro.ddpm_ambiguity_set`); ``j_batch``
    is the nominal batch of each J estimate, whose sd is reported in ``info["J_sd"]``.
    ``vae_ambiguity=True`` makes the VAE ambiguity set GAS-DRO's (Table 5's VAE variant).
    ``info`` holds J0, the W1 distances, the reference rows and the pre-training times.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}, got {protocol!r}")
    cfg = dict(PROTOCOLS[protocol])
    for name, value in (("stride", stride), ("test_stride", test_stride), ("predictor", predictor),
                        ("noise_net", noise_net), ("noise_features", noise_features)):
        if value is not None:
            cfg[name] = value
    keys = jax.random.split(key, 8)
    task = dro.carbon_task(cfg["train_zone"], cfg["train_years"], window=window, path=path, stride=cfg["stride"],
                           test_stride=cfg["test_stride"], scaling=cfg["scaling"], validation=validation,
                           ood_validation=tuple(ood_validation))
    train = jnp.asarray(task.train)
    mean, std = float(train.mean()), float(train.std())
    z = (train - mean) / std
    widths = tuple(cfg["predictor"])
    model = LSTMForecaster(hidden=widths[0]) if len(widths) == 1 else StackedLSTMForecaster(widths)
    params = model.init(keys[0], train[0, :-1])
    loss_fn = forecast_loss(model)
    tests = {k: np.asarray(v) for k, v in task.tests.items()}
    ood = None if task.ood_validation is None else np.concatenate(list(task.ood_validation.values()))
    info = {"protocol": protocol, **{k: v for k, v in cfg.items()}, "train_windows": int(train.shape[0]),
            "test_windows": {k: int(v.shape[0]) for k, v in tests.items()}, "wasserstein": task.wasserstein,
            "ood_validation_sets": sorted(task.ood_validation or {}),
            "reference": reference_rows(tests)}
    if ood is not None:
        info["reference_validation"] = {"persistence": persistence_mse(ood), "seasonal naive": seasonal_naive_mse(ood)}

    beta_end = min(0.02 * 1000 / num_steps, 0.5) if num_steps < 1000 else 0.02
    schedule = ddpm.make_schedule(num_steps, beta_end=beta_end)
    net = _noise_net(cfg["noise_net"], cfg["noise_features"])
    apply = lambda p, x, t, c: net.apply(p, x, t, c)  # noqa: E731
    t0 = time.perf_counter()
    theta0, trace = train_ddpm(keys[1], apply, net.init(keys[2], z[:2], jnp.ones(2, jnp.int32)), schedule, z,
                               num_steps=generator_steps, batch_size=256, learning_rate=2e-3 if cfg["noise_net"] == "mlp" else 1e-3)
    info["ddpm_seconds"], info["ddpm_final_loss"] = time.perf_counter() - t0, float(trace[-100:].mean())
    unscale = lambda x, c: x * std + mean  # noqa: E731
    last_steps = matched_last_steps(schedule) if last_steps is None else int(last_steps)
    info.update(last_steps=last_steps, frozen_prefix=frozen_prefix, reconstruction_steps=reconstruction_steps,
                policy_std=policy_std, j_batch=j_batch)
    aset = dro.ddpm_ambiguity_set(apply, schedule, (window + 1,), last_steps, to_sample=unscale,
                                  frozen_params=theta0 if frozen_prefix else None,
                                  reconstruction_steps=reconstruction_steps, policy_std=policy_std)
    j0 = estimate_reconstruction(aset.reconstruction_loss, theta0, keys[3], z)
    info.update(J0=j0, budget=j0 + budget_delta, J_sd=reconstruction_sd(aset.reconstruction_loss, theta0, keys[3], z, j_batch))
    generator_params, generator_data = theta0, np.asarray(z)
    resources = dict(ambiguity_set=aset, generator_params=theta0, generator_data=np.asarray(z))
    if baselines or vae_ambiguity:
        vae = _vae.VAE((window + 1,), latent_dim=8, hidden=(128, 128), obs_std=0.1)
        t0 = time.perf_counter()
        vparams, _ = train_vae(keys[4], vae, vae.init(keys[5], z[0], jnp.zeros(8)), z, num_steps=vae_steps,
                               batch_size=256, learning_rate=2e-3)
        info["vae_seconds"] = time.perf_counter() - t0
        resources.update(encode=lambda s: vae.apply(vparams, (s - mean) / std, method=_vae.VAE.encode)[0],
                         decode=lambda lat, s: vae.apply(vparams, lat, method=_vae.VAE.decode) * std + mean)
        if vae_ambiguity:
            vset = dro.vae_ambiguity_set(vae, vparams, to_sample=unscale)
            _, decoder = _vae.split_params(vparams)
            vj0 = estimate_reconstruction(vset.reconstruction_loss, decoder, keys[3], z)
            info.update(J0=vj0, budget=vj0 + budget_delta,
                        J_sd=reconstruction_sd(vset.reconstruction_loss, decoder, keys[3], z, j_batch), generator="vae")
            resources.update(ambiguity_set=vset, generator_params=decoder)
    if baselines:
        n_gen = int(train.shape[0]) if num_generated is None else num_generated
        dml = dro.dml_dataset(keys[7], resources["ambiguity_set"], resources["generator_params"], train, n_gen)
        resources.update(dml_data=np.asarray(dml), pdro_features=lambda s: (s - mean) / std,
                         pdro_nominal=dro.gmm_mle(keys[6], z[:8192], components=8))
    del generator_params, generator_data
    return Setup(loss_fn, model, params, np.asarray(train), tests, Resources(**resources), info["budget"], info,
                 task.validation, ood)

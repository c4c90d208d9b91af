"""Bad-input specs (see spec.py) for the public API of the dro area: tailjax.dro, tailjax.nn
and tailjax.checkpoint.

Skipped (nothing to probe):
- dro.AmbiguitySet, DDPMTrajectory, VAETrajectory, GasDroConfig/Batch/State/Info, OuterBatch,
  InnerBatch/State/Info, PolicyBatch, PDroState/Info/AdversaryBatch, CarbonTask: NamedTuples
  (GasDroConfig's fields are probed through gas_dro_kernel);
- dro.ppo_ratio: elementwise exp of a difference, no range or shape to check;
- dro.load_usps, available_zone_years, ZONES: file loaders / a constant, no scalar argument;
- nn.split_params, merge_params, from_nnx, to_nnx: tree plumbing, no scalar argument;
- nn.vae_sample: no scalar argument (cond is the user's vector);
- nn.DDPMSchedule, VAE, MLPForecaster, UNet, MLPNoiseNet: constructors whose sizes are
  probed through the functions that use them (make_schedule, vae_loss, ...), or Flax's own
  Dense/Conv checks.
- checkpoint.describe_config, key_fingerprint, flat_arrays, from_flat_arrays, to_host:
  total functions of any pytree, nothing out of range.
"""

from __future__ import annotations

import os
import tempfile
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tailjax import checkpoint, dro, nn
from tailjax.nn import ddpm as _ddpm
from tests.bad_input.spec import Kind, Spec, choice, count, level, positive, samples, weights

KEY = jax.random.PRNGKey(0)
B = jax.random.normal(jax.random.PRNGKey(4), (8, 2))  # a batch of 8 samples of dimension 2
V = jax.random.normal(jax.random.PRNGKey(5), (8,))
IMAGES = jax.random.uniform(jax.random.PRNGKey(6), (2, 4, 4))
WINDOWS = jax.random.uniform(jax.random.PRNGKey(7), (3, 6))
LOSS = lambda w, x: jnp.sum((x - w) ** 2)  # noqa: E731
W0 = jnp.zeros(2)


def _toy_ambiguity_set():
    """A Gaussian location family: theta (2,) the mean; J the squared distance to the data."""
    def sample(key, theta, n):
        x = theta + jax.random.normal(key, (n, 2))
        return x, x

    def log_prob(theta, traj):
        return -0.5 * jnp.sum((traj - theta) ** 2, axis=-1)

    def reconstruction_loss(theta, data, key):
        del key
        return jnp.mean((data - theta) ** 2)

    return dro.AmbiguitySet(sample, log_prob, reconstruction_loss)


AMB = _toy_ambiguity_set()


def _range(low_bad: float, high_bad: float) -> Kind:
    """A level in [0, high) with ``high_bad`` the first value out of range."""
    return Kind({"negative": low_bad, "at the top": high_bad, "nan": float("nan"), "inf": float("inf")},
                traced=False)


def _inner_specs():
    policy = dro.PolicyBatch(V[:, None] + B, -0.5 * jnp.sum(B**2, -1), V, jnp.asarray(1.0), B)
    inner_kw = {"clip": 0.4, "budget": 0.015, "dual_lr": 0.01, "num_samples": 4, "epochs": 1,
                "estimator": "ppo", "advantages": "center", "reference": "nominal"}
    inner_kinds = {"clip": level(), "budget": positive(allow_zero=True), "dual_lr": positive(allow_zero=True),
                   "num_samples": count(2), "epochs": count(1), "estimator": choice("ppo", "reinforce"),
                   "advantages": choice("raw", "center", "standardize"),
                   "reference": choice("nominal", "current")}
    return [
        Spec("dro.reinforce_surrogate", lambda **a: dro.reinforce_surrogate(a["log_prob"], a["advantages"]),
             {"log_prob": V, "advantages": V + 1.0}, {"log_prob": samples(), "advantages": samples()}),
        Spec("dro.standardize", lambda **a: dro.standardize(a["values"], a["eps"]),
             {"values": V, "eps": 1e-8}, {"values": samples(), "eps": positive(allow_zero=True)}),
        Spec("dro.lagrangian_loss",
             lambda **a: dro.lagrangian_loss(W0, policy, KEY, ambiguity_set=AMB, clip=a["clip"],
                                             estimator=a["estimator"])[0],
             {"clip": 0.4, "estimator": "ppo"}, {"clip": level(), "estimator": choice("ppo", "reinforce")}),
        Spec("dro.inner_max_kernel",
             lambda **a: dro.inner_max_kernel(AMB, LOSS, optax.sgd(0.1), **a).init(W0).generator.params,
             inner_kw, inner_kinds, jittable=False),
    ]


def _gas_dro_specs():
    config = {"inner_steps": 1, "epochs": 1, "clip": 0.4, "budget": 0.015, "dual_lr": 0.01, "num_samples": 4,
              "outer_samples": 4, "outer_steps": 1, "estimator": "ppo", "advantages": "center",
              "nominal_weight": 0.0, "reference": "nominal"}
    config_kinds = {"inner_steps": count(1), "epochs": count(1), "clip": level(),
                    "budget": positive(allow_zero=True), "dual_lr": positive(allow_zero=True),
                    "num_samples": count(2), "outer_samples": count(1), "outer_steps": count(1),
                    "estimator": choice("ppo", "reinforce"), "advantages": choice("raw", "center", "standardize"),
                    "nominal_weight": level(closed_left=True), "reference": choice("nominal", "current")}

    def kernel(**a):
        return dro.gas_dro_kernel(AMB, LOSS, optax.sgd(0.1), optax.sgd(0.1), dro.GasDroConfig(**a))

    cfg = dro.GasDroConfig(**config)
    gas = kernel(**config)

    def fit(**a):
        return dro.fit_gas_dro(KEY, gas, gas.init(W0, W0), a["data"], num_steps=a["num_steps"], config=cfg,
                               batch_size=a["batch_size"], nominal_batch_size=a["nominal_batch_size"],
                               progress=False).state.predictor.params

    state = types.SimpleNamespace(predictor=types.SimpleNamespace(params=W0), selected=W0)
    return [
        Spec("dro.gas_dro_kernel", lambda **a: kernel(**a).init(W0, W0).predictor.params, config, config_kinds,
             jittable=False),
        Spec("dro.gas_dro_outer_loss",
             lambda **a: dro.gas_dro_outer_loss(W0, dro.OuterBatch(a["samples"], B), KEY, loss_fn=LOSS,
                                                nominal_weight=a["nominal_weight"])[0],
             {"samples": B, "nominal_weight": 0.5},
             {"samples": samples(), "nominal_weight": level(closed_left=True)}),
        Spec("dro.select_predictor", lambda **a: dro.select_predictor(state, a["rule"]),
             {"rule": "last"}, {"rule": choice("last", "uniform")}, jittable=False),
        Spec("dro.fit_gas_dro", fit,
             {"data": B, "num_steps": 1, "batch_size": 4, "nominal_batch_size": 4},
             {"data": Kind({"nan entry": lambda a: a.at[0, 0].set(jnp.nan)}, traced=False),
              "num_steps": count(0), "batch_size": count(1), "nominal_batch_size": count(1)},
             jittable=False),
    ]


def _baseline_specs():
    ascent = {"penalty": positive(), "steps": count(1), "step_size": positive()}
    ascent_valid = {"penalty": 1.0, "steps": 2, "step_size": 0.05}
    psi = dro.gmm_mle(KEY, B, components=2, iters=2)
    return [
        Spec("dro.erm_loss", lambda **a: dro.erm_loss(W0, a["batch"], KEY, loss_fn=LOSS)[0],
             {"batch": B}, {"batch": samples()}),
        Spec("dro.dml_dataset",
             lambda **a: dro.dml_dataset(KEY, AMB, W0, B, a["num_generated"], a["chunk"]),
             {"num_generated": 4, "chunk": 2}, {"num_generated": count(0), "chunk": count(1)}, jittable=False),
        Spec("dro.kl_tilted_divergence",
             lambda **a: dro.kl_tilted_divergence(a["losses"], a["lam"], a["probs"]),
             {"losses": V, "lam": 1.0, "probs": jnp.abs(V) + 0.1},
             {"losses": samples(), "lam": positive(), "probs": weights()}),
        Spec("dro.kl_dro_params", lambda **a: dro.kl_dro_params(W0, a["lam"]),
             {"lam": 1.0}, {"lam": positive()}),
        # the aux lam is exp of a parameter, not a result of the probed arguments
        Spec("dro.kl_dro_loss",
             lambda **a: dro.kl_dro_loss((W0, jnp.asarray(0.0)), a["batch"], KEY, loss_fn=LOSS,
                                         radius=a["radius"])[0],
             {"batch": B, "radius": 0.1}, {"batch": samples(), "radius": positive(allow_zero=True)}),
        Spec("dro.penalty_ascent",
             lambda **a: dro.penalty_ascent(lambda u: jnp.sum(jnp.sin(u)), W0, a["penalty"], a["steps"],
                                            a["step_size"]),
             ascent_valid, ascent),
        Spec("dro.wasserstein_loss",
             lambda **a: dro.wasserstein_loss(W0, a["batch"], KEY, loss_fn=LOSS, penalty=a["penalty"],
                                              steps=a["steps"], step_size=a["step_size"])[0],
             {"batch": B, **ascent_valid}, {"batch": samples(), **ascent}),
        Spec("dro.dragen_loss",
             lambda **a: dro.dragen_loss(W0, a["batch"], KEY, loss_fn=LOSS, encode=lambda s: s,
                                         decode=lambda z, s: z, penalty=a["penalty"], steps=a["steps"],
                                         step_size=a["step_size"])[0],
             {"batch": B, **ascent_valid}, {"batch": samples(), **ascent}),
        Spec("dro.reweighted_loss",
             lambda **a: dro.reweighted_loss(W0, (a["batch"], a["weights"]), KEY, loss_fn=LOSS)[0],
             {"batch": B, "weights": jnp.full(8, 0.125)}, {"batch": samples(), "weights": weights()}),
        # the aux KL is a function of psi alone
        Spec("dro.pdro_adversary_loss",
             lambda **a: dro.pdro_adversary_loss(psi, dro.PDroAdversaryBatch(B, a["losses"], psi), KEY,
                                                 log_density=dro.gmm_log_density, kl_weight=a["kl_weight"])[0],
             {"losses": V, "kl_weight": 0.1}, {"losses": samples(), "kl_weight": positive()}),
        Spec("dro.pdro_kernel",
             lambda **a: dro.pdro_kernel(LOSS, dro.gmm_log_density, optax.sgd(0.1), optax.sgd(0.1),
                                         kl_weight=a["kl_weight"]).init(W0, psi).predictor.params,
             {"kl_weight": 0.1}, {"kl_weight": positive()}, jittable=False),
        Spec("dro.gmm_log_density", lambda **a: dro.gmm_log_density(psi, a["x"]),
             {"x": B[0]}, {"x": samples(batched=False)}),
        Spec("dro.gmm_mle",
             lambda **a: dro.gmm_mle(KEY, a["x"], components=a["components"], iters=a["iters"],
                                     min_std=a["min_std"]),
             {"x": B, "components": 2, "iters": 2, "min_std": 1e-3},
             {"x": samples(), "components": count(1), "iters": count(0), "min_std": positive()}),
    ]


def _ambiguity_specs():
    schedule = nn.make_schedule(10)
    net = nn.MLPNoiseNet((8,), time_dim=4)
    vae = nn.VAE((2,), latent_dim=2, hidden=(4,))
    vae_params = vae.init(KEY, B[0], jnp.zeros(2))
    return [
        Spec("dro.ddpm_ambiguity_set",
             # the arguments are checked when the set is built: a built set is the valid result
             lambda **a: (dro.ddpm_ambiguity_set(net.apply, schedule, (2,), **a), jnp.ones(()))[1],
             {"last_steps": 3, "weighting": "simple", "reconstruction_steps": "last", "policy_std": 0.1},
             {"last_steps": count(1), "weighting": choice("simple", "elbo"),
              "reconstruction_steps": choice("last", "all"), "policy_std": positive()},
             jittable=False),
        Spec("dro.vae_ambiguity_set",
             lambda **a: dro.vae_ambiguity_set(vae, vae_params, anchors=a["anchors"]).log_prob(
                 nn.split_params(vae_params)[1], dro.VAETrajectory(B, B, None)),
             {"anchors": B}, {"anchors": samples()}, jittable=False),
    ]


def _corruption_specs():
    image = IMAGES[0]
    img = samples(batched=False, nan_ok=True)  # a NaN pixel stays NaN, the others are finite
    return [
        Spec("dro.gaussian_noise", lambda **a: dro.gaussian_noise(KEY, a["image"], a["std"]),
             {"image": image, "std": 0.1}, {"image": img, "std": positive(allow_zero=True)}),
        Spec("dro.perlin_noise", lambda **a: dro.perlin_noise(KEY, a["image"], a["strength"], a["res"]),
             {"image": image, "strength": 0.1, "res": 2},
             {"image": img, "strength": positive(allow_zero=True), "res": count(1)}),
        Spec("dro.cutout", lambda **a: dro.cutout(KEY, a["image"], a["size"]),
             {"image": image, "size": 2}, {"image": img, "size": count(0)}),
        Spec("dro.corrupt", lambda **a: dro.corrupt(KEY, a["images"], a["kind"], a["level"]),
             {"images": IMAGES, "kind": "perlin", "level": 0.1},
             {"images": samples(nan_ok=True), "kind": choice("gaussian", "perlin", "cutout"),
              "level": positive(allow_zero=True)}),
        Spec("dro.corrupt_series",
             lambda **a: dro.corrupt_series(KEY, a["windows"], a["kind"], a["level"], a["res"]),
             {"windows": WINDOWS, "kind": "perlin", "level": 0.1, "res": 2},
             {"windows": samples(nan_ok=True), "kind": choice("gaussian", "perlin", "cutout"),
              "level": positive(allow_zero=True), "res": count(1)}),
        Spec("dro.perlin_field_1d", lambda **a: dro.perlin_field_1d(KEY, a["length"], a["res"]),
             {"length": 5, "res": 2}, {"length": count(1), "res": count(1)}),
    ]


def _data_specs():
    series = jnp.linspace(0.0, 1.0, 12)
    return [
        Spec("dro.sliding_windows", lambda **a: dro.sliding_windows(a["series"], a["window"], a["stride"]),
             {"series": series, "window": 3, "stride": 2},
             {"series": samples(batched=False), "window": count(1), "stride": count(1)}, jittable=False),
        Spec("dro.wasserstein_1d", lambda **a: jnp.asarray(dro.wasserstein_1d(a["a"], a["b"])),
             {"a": V, "b": V + 1.0},
             {"a": Kind({k: v for k, v in samples().bad.items() if k != "scalar"}),
              "b": Kind({k: v for k, v in samples().bad.items() if k != "scalar"})}, jittable=False),
        # only the arguments checked before any file is read
        Spec("dro.carbon_task",
             lambda **a: dro.carbon_task(validation=a["validation"], test_stride=a["test_stride"]).train,
             {"validation": 0.1, "test_stride": 1},
             {"validation": _range(-0.1, 0.5), "test_stride": count(1)}, jittable=False),
        Spec("dro.load_carbon_intensity", lambda **a: dro.load_carbon_intensity("ERCOT", 2021, column=a["column"]),
             {"column": "direct"}, {"column": choice("direct", "lca")}, jittable=False),
        Spec("dro.load_sklearn_digits", lambda **a: dro.load_sklearn_digits(a["size"])[0],
             {"size": 8}, {"size": count(8)}, jittable=False),
        Spec("dro.load_mnist_subset", lambda **a: dro.load_mnist_subset(a["size"], a["crop"])[0],
             {"size": 8, "crop": 4},
             {"size": count(8), "crop": Kind({**count(0).bad, "too large": 12}, traced=False)}, jittable=False),
    ]


def _nn_specs():
    schedule = nn.make_schedule(10)
    net = nn.MLPNoiseNet((8,), time_dim=4)
    net_params = net.init(KEY, B[0], jnp.asarray(1))
    vae = nn.VAE((2,), latent_dim=2, hidden=(4,))
    vae_params = vae.init(KEY, B[0], jnp.zeros(2))
    flow = nn.ConditionalFlow(event_dim=2, context_dim=1, num_layers=1, hidden_sizes=(4,))
    flow_params = flow.init(KEY, B[:2], B[:2, :1])
    odd_dim = Kind({"odd": 3, "zero": 0, "negative": -2}, traced=False)
    flow_kw = {"event_dim": 2, "num_layers": 1, "coupling": "affine", "max_log_scale": 3.0, "support": "real"}

    def flow_init(**a):
        f = nn.ConditionalFlow(context_dim=1, hidden_sizes=(4,), **a)
        return f.init(KEY, jnp.ones((2, a["event_dim"])) if isinstance(a["event_dim"], int)
                      and a["event_dim"] > 0 else jnp.ones((2, 2)), B[:2, :1])

    return [
        Spec("nn.make_schedule",
             lambda **a: nn.make_schedule(a["num_steps"], a["kind"], a["beta_start"], a["beta_end"],
                                          a["variance"]).betas,
             {"num_steps": 10, "kind": "linear", "beta_start": 1e-4, "beta_end": 0.02, "variance": "beta"},
             {"num_steps": count(2), "kind": choice("linear", "quadratic", "cosine"), "beta_start": level(),
              "beta_end": level(), "variance": choice("beta", "posterior")}, jittable=False),
        Spec("nn.dm_loss",
             lambda **a: nn.dm_loss(net_params, a["batch"], KEY, apply_fn=net.apply, schedule=schedule,
                                    weighting=a["weighting"], max_step=a["max_step"])[0],
             {"batch": B, "weighting": "simple", "max_step": 5},
             {"batch": samples(), "weighting": choice("simple", "elbo"),
              "max_step": Kind({**count(1).bad, "above T": 11}, traced=False)}),
        Spec("nn.ddpm_sample",
             lambda **a: nn.ddpm_sample(KEY, net.apply, net_params, schedule, (2,), last_steps=a["last_steps"],
                                        policy_std=a["policy_std"])[0],
             {"last_steps": 3, "policy_std": 0.1},
             {"last_steps": Kind({**count(0).bad, "above T": 11}, traced=False), "policy_std": positive()}),
        Spec("nn.vae_loss", lambda **a: nn.vae_loss(vae_params, a["batch"], KEY, vae=vae)[0],
             {"batch": B}, {"batch": samples()}),
        Spec("nn.sinusoidal_embedding",
             lambda **a: nn.sinusoidal_embedding(jnp.linspace(0, 1, 3), a["dim"], a["max_frequency"]),
             {"dim": 4, "max_frequency": 100.0}, {"dim": odd_dim, "max_frequency": positive()}),
        Spec("nn.VelocityField",
             lambda **a: nn.VelocityField((4,), a["time_embedding_dim"], a["max_frequency"]).init(KEY, B, V),
             {"time_embedding_dim": 4, "max_frequency": 100.0},
             {"time_embedding_dim": odd_dim, "max_frequency": positive()}, jittable=False),
        Spec("nn.ConditionalFlow", flow_init, flow_kw,
             {"event_dim": count(1), "num_layers": count(0), "coupling": choice("affine", "spline"),
              "max_log_scale": positive(), "support": choice("real", "positive")}, jittable=False),
        Spec("nn.ConditionalFlow.sample",
             lambda **a: flow.apply(flow_params, KEY, B[:2, :1], a["num_samples"], method=flow.sample),
             {"num_samples": 3}, {"num_samples": count(1)}),
        Spec("nn.standardise_params", lambda **a: nn.standardise_params(flow_params, a["c"]),
             {"c": B}, {"c": samples()}),
        Spec("nn.LinearPredictor",
             lambda **a: nn.init_predictor(nn.LinearPredictor(a["out_dim"]), KEY, a["num_features"]),
             {"out_dim": 2, "num_features": 3}, {"out_dim": count(1), "num_features": count(1)}, jittable=False),
        Spec("nn.MLPPredictor",
             lambda **a: nn.init_predictor(nn.MLPPredictor(a["out_dim"], a["hidden"]), KEY, 3),
             {"out_dim": 2, "hidden": (4,)},
             {"out_dim": count(1), "hidden": Kind({"zero width": (0,), "negative": (-2,)}, traced=False)},
             jittable=False),
        Spec("nn.LSTMForecaster",
             lambda **a: nn.LSTMForecaster(a["hidden"], a["out_dim"]).init(KEY, WINDOWS),
             {"hidden": 4, "out_dim": 1}, {"hidden": count(1), "out_dim": count(1)}, jittable=False),
        Spec("nn.StackedLSTMForecaster",
             lambda **a: nn.StackedLSTMForecaster(a["hidden"], a["out_dim"]).init(KEY, WINDOWS),
             {"hidden": (4, 2), "out_dim": 1},
             {"hidden": Kind({"none": (), "zero width": (0,), "negative": (4, -2)}, traced=False),
              "out_dim": count(1)}, jittable=False),
        Spec("nn.MLPClassifier",
             lambda **a: nn.MLPClassifier(a["hidden"], a["num_classes"]).init(KEY, IMAGES),
             {"hidden": 4, "num_classes": 3}, {"hidden": count(1), "num_classes": count(1)}, jittable=False),
        Spec("nn.ConvNoiseNet",
             lambda **a: nn.ConvNoiseNet(a["channels"], a["depth"], a["kernel_size"], 4).init(
                 KEY, WINDOWS, jnp.ones(3, jnp.int32)),
             {"channels": 4, "depth": 1, "kernel_size": 3},
             {"channels": count(1), "depth": count(0), "kernel_size": count(1)}, jittable=False),
        Spec("nn.UNet1D",
             lambda **a: nn.UNet1D(a["channels"], 4, a["kernel_size"]).init(KEY, WINDOWS, jnp.ones(3, jnp.int32)),
             {"channels": (4, 4), "kernel_size": 3},
             {"channels": Kind({"none": (), "zero width": (0, 4)}, traced=False), "kernel_size": count(1)},
             jittable=False),
        Spec("nn.UNet",
             lambda **a: nn.UNet(a["channels"], 4).init(KEY, IMAGES, jnp.ones(2, jnp.int32)),
             {"channels": (4, 4)}, {"channels": Kind({"none": (), "zero width": (0, 4)}, traced=False)},
             jittable=False),
    ]


def _files():
    folder = tempfile.mkdtemp(prefix="tailjax_bad_input_")
    state = {"w": jnp.ones(3), "b": jnp.zeros(())}
    good = os.path.join(folder, "state.ckpt")
    checkpoint.save(good, state, step=2, config={"lr": 0.1})
    params = os.path.join(folder, "params.msgpack")
    nn.save_params(params, state)
    garbage = os.path.join(folder, "garbage.ckpt")
    with open(garbage, "wb") as f:
        f.write(b"\x00not a checkpoint")
    empty = os.path.join(folder, "empty.ckpt")
    open(empty, "wb").close()
    return folder, state, good, params, garbage, empty


def _checkpoint_specs():
    folder, state, good, params, garbage, empty = _files()
    bad_path = Kind({"directory": folder, "garbage file": garbage, "empty file": empty}, traced=False)
    bad_template = Kind({
        "wrong shape": {"w": jnp.ones(4), "b": jnp.zeros(())},
        "missing leaf": {"w": jnp.ones(3)},
        "extra leaf": {**state, "c": jnp.ones(2)},
        "wrong dtype": {"w": jnp.ones(3, jnp.int32), "b": jnp.zeros(())},
    }, traced=False)
    return [
        Spec("checkpoint.restore",
             lambda **a: checkpoint.restore(a["path"], a["template"], config=a["config"])[0],
             {"path": good, "template": state, "config": {"lr": 0.1}},
             {"path": bad_path, "template": bad_template,
              "config": Kind({"other value": {"lr": 0.2}, "other key": {"eta": 0.1}}, traced=False)},
             jittable=False),
        Spec("checkpoint.read_header", lambda **a: jnp.asarray(checkpoint.read_header(a["path"])["step"], float),
             {"path": good}, {"path": bad_path}, jittable=False),
        Spec("checkpoint.save",
             lambda **a: checkpoint.save(a["path"], state, step=a["step"]) or jnp.ones(()),
             {"path": os.path.join(folder, "new.ckpt"), "step": 1},
             {"path": Kind({"directory": folder}, traced=False), "step": count(0)}, jittable=False),
        Spec("nn.load_params", lambda **a: nn.load_params(a["path"], a["template"]),
             {"path": params, "template": state},
             {"path": bad_path, "template": Kind({k: v for k, v in bad_template.bad.items()
                                                  if k not in ("missing leaf", "wrong dtype")}, traced=False)},
             jittable=False),
        Spec("nn.save_params", lambda **a: nn.save_params(a["path"], state) and jnp.ones(()),
             {"path": os.path.join(folder, "new.msgpack")}, {"path": Kind({"directory": folder}, traced=False)},
             jittable=False),
    ]


SPECS: list = (_inner_specs() + _gas_dro_specs() + _baseline_specs() + _ambiguity_specs() + _corruption_specs()
               + _data_specs() + _nn_specs() + _checkpoint_specs())

"""Bad-input specs (see spec.py) for the public API of the flows area.

Skipped (nothing to probe):
- rectified_flow, cosine_schedule: constructors without arguments.
- cast_field: wraps a function; its only other argument is a dtype.
- Schedule, MemorylessCoefficients, AdjointMatchingBatch, AdjointMatchingInfo, TFFTThreshold,
  TFFTResult, TFFTDiagnostics, TFFTWarning, TFFTDiagnosticError, FDCGridResult, FDCResult,
  GridDistances: containers and exception classes.
- quantile_level_annealing, tilt_diagnostics: covered in specs.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from tailjax import flows
from tests.bad_input.spec import NAN, Kind, Spec, choice, count, level, positive, samples, weights

D, N = 2, 4
KEY = jax.random.PRNGKey(0)
XS = jax.random.normal(jax.random.PRNGKey(1), (N, D))
X1 = XS[0]
K = 3  # memoryless steps
COEFS = flows.memoryless_coefficients(num_steps=K)
TRAJ = jax.random.normal(jax.random.PRNGKey(2), (K + 1, D))
NOISE = jax.random.normal(jax.random.PRNGKey(3), (N, K, D))
G = 6
LOGP = jnp.full((G,), -jnp.log(float(G)))
REWARDS = jnp.linspace(-1.0, 1.0, G)
MEANS = jnp.stack([jnp.zeros(D), jnp.ones(D)])
COVS = jnp.stack([jnp.eye(D), 0.5 * jnp.eye(D)])
MIX_W = jnp.array([0.3, 0.7])
ALPHA_BARS = jnp.linspace(0.99, 0.1, 5)


def field(params, x, t):
    return params * x


def base(x, t):
    return -x


def reward(x):
    return jnp.sum(x)


def _run(kernel):
    state, info = kernel.step(kernel.init(jnp.ones(())), KEY)
    return state.params, info.loss


def time():
    """A time in [0, 1]."""
    return level(closed_left=True, closed_right=True)


def grid():
    """A time grid: increasing from 0 to 1."""
    return Kind({
        "scalar": jnp.asarray(0.5),
        "too short": jnp.array([0.0]),
        "nan entry": lambda a: a.at[1].set(NAN),
        "not monotone": lambda a: a.at[1].set(0.9),
    })


def alpha_bars():
    """Cumulative products of a DDPM: a vector in (0, 1]."""
    return Kind({
        "scalar": jnp.asarray(0.5),
        "nan entry": lambda a: a.at[1].set(NAN),
        "negative entry": lambda a: a.at[1].set(-0.5),
        "zero entry": lambda a: a.at[1].set(0.0),
        "above one": lambda a: a.at[1].set(1.5),
    })


def t_min():
    """A clipping time in (0, 0.5)."""
    return Kind({"zero": 0.0, "negative": -0.1, "half": 0.5, "nan": NAN, "inf": float("inf")})


def cov():
    return Kind({
        "nan entry": lambda a: a.at[0, 0].set(NAN),
        "not positive definite": lambda a: -a,
        "wrong shape": jnp.eye(D + 1),
    })


def _schedule_specs():
    sched = flows.rectified_flow()
    specs = [
        Spec(f"flows.{name}", lambda fn=fn, **a: fn(sched, a["t"]), {"t": 0.3}, {"t": time()})
        for name, fn in [("kappa", flows.kappa), ("eta", flows.eta), ("memoryless_sigma", flows.memoryless_sigma)]
    ]
    specs.append(Spec("flows.data_prediction", lambda **a: flows.data_prediction(sched, XS, XS, a["t"]),
                      {"t": 0.3}, {"t": time()}))
    return specs


def _diffusion_specs():
    eps = lambda p, x, t: 0.5 * x  # noqa: E731
    return [
        Spec("flows.velocity_from_noise_prediction",
             lambda **a: flows.velocity_from_noise_prediction(eps, flows.cosine_schedule(), t_min=a["t_min"])(
                 None, X1, 0.5),
             {"t_min": 1e-3}, {"t_min": t_min()}, jittable=False),
        Spec("flows.vp_schedule_from_ddpm",
             lambda **a: flows.vp_schedule_from_ddpm(a["alpha_bars"]).alpha(jnp.array([0.2, 0.5])),
             {"alpha_bars": ALPHA_BARS}, {"alpha_bars": alpha_bars()}, jittable=False),
        Spec("flows.ddpm_velocity",
             lambda **a: flows.ddpm_velocity(eps, a["alpha_bars"], t_min=a["t_min"])[0](None, X1, 0.5),
             {"alpha_bars": ALPHA_BARS, "t_min": 1e-3}, {"alpha_bars": alpha_bars(), "t_min": t_min()},
             jittable=False),
    ]


def _gaussian_specs():
    return [
        Spec("flows.gaussian_velocity",
             lambda **a: flows.gaussian_velocity(a["x"], a["t"], a["mean"], a["cov"]),
             {"x": X1, "t": 0.3, "mean": MEANS[1], "cov": COVS[1]},
             {"x": samples(batched=False), "t": time(), "mean": samples(batched=False), "cov": cov()}),
        Spec("flows.gaussian_mixture_velocity",
             lambda **a: flows.gaussian_mixture_velocity(a["x"], a["t"], a["weights"], MEANS, COVS),
             {"x": X1, "t": 0.3, "weights": MIX_W},
             {"x": samples(batched=False), "t": time(), "weights": weights()}),
        Spec("flows.gaussian_mixture_log_prob",
             lambda **a: flows.gaussian_mixture_log_prob(a["x"], a["weights"], MEANS, COVS),
             {"x": X1, "weights": MIX_W}, {"x": samples(batched=False), "weights": weights()}),
        Spec("flows.tilt_gaussian_mixture",
             lambda **a: flows.tilt_gaussian_mixture(a["weights"], MEANS, COVS, a["c"]),
             {"weights": MIX_W, "c": X1}, {"weights": weights(), "c": samples(batched=False)}),
    ]


def _matching_specs():
    opt = optax.sgd(0.1)
    return [
        Spec("flows.flow_matching_loss",
             lambda **a: flows.flow_matching_loss(1.0, a["batch"], KEY, velocity_fn=field),
             {"batch": XS}, {"batch": samples()}),
        Spec("flows.flow_matching",
             lambda **a: flows.flow_matching(field, opt, batch_size=a["batch_size"]).step(
                 flows.flow_matching(field, opt).init(jnp.ones(())), KEY, XS)[0].params,
             {"batch_size": 2}, {"batch_size": count(1)}, jittable=False),
        Spec("flows.fit_flow_matching",
             lambda **a: flows.fit_flow_matching(KEY, field, jnp.ones(()), a["data"], num_steps=a["num_steps"],
                                                 batch_size=a["batch_size"], progress=False).state.params,
             {"data": XS, "num_steps": 2, "batch_size": 2},
             {"data": samples(), "num_steps": count(0), "batch_size": count(1)}, jittable=False),
    ]


def _ode_specs():
    ts = jnp.linspace(0.0, 1.0, 4)
    method = choice("euler", "heun")
    return [
        Spec("flows.uniform_time_grid", lambda **a: flows.uniform_time_grid(a["num_steps"]),
             {"num_steps": 3}, {"num_steps": count(1)}, jittable=False),
        # per-sample maps: a NaN sample gives NaN for that sample only
        Spec("flows.ode_solve",
             lambda **a: flows.ode_solve(field, 1.0, a["x0"], ts=a["ts"], method=a["method"]),
             {"x0": XS, "ts": ts, "method": "euler"},
             {"x0": samples(nan_ok=True), "ts": grid(), "method": method}),
        Spec("flows.ode_solve[num_steps]",
             lambda **a: flows.ode_solve(field, 1.0, XS, num_steps=a["num_steps"]),
             {"num_steps": 3}, {"num_steps": count(1)}),
        Spec("flows.ode_sample",
             lambda **a: flows.ode_sample(KEY, field, 1.0, a["num_samples"], a["dim"], num_steps=a["num_steps"]),
             {"num_samples": N, "dim": D, "num_steps": 3},
             {"num_samples": count(1), "dim": count(1), "num_steps": count(1)}),
        Spec("flows.ode_sample_and_log_prob",
             lambda **a: flows.ode_sample_and_log_prob(field, 1.0, a["x0"], ts=a["ts"], logdet=a["logdet"]),
             {"x0": XS, "ts": ts, "logdet": "exact"},
             {"x0": samples(nan_ok=True), "ts": grid(), "logdet": choice("exact", "trace")}),
        Spec("flows.ode_log_prob",
             lambda **a: flows.ode_log_prob(field, 1.0, a["x1"], num_steps=a["num_steps"], method=a["method"]),
             {"x1": XS, "num_steps": 3, "method": "euler"},
             {"x1": samples(nan_ok=True), "num_steps": count(1), "method": method}),
    ]


def _sde_specs():
    ts = jnp.linspace(0.0, 1.0, K + 1)
    return [
        Spec("flows.memoryless_coefficients",
             lambda **a: flows.memoryless_coefficients(num_steps=a["num_steps"], ts=a["ts"]),
             {"num_steps": K, "ts": ts}, {"ts": grid()}),
        Spec("flows.memoryless_coefficients[num_steps]",
             lambda **a: flows.memoryless_coefficients(num_steps=a["num_steps"]),
             {"num_steps": K}, {"num_steps": count(2)}),
        Spec("flows.memoryless_solve",
             lambda **a: flows.memoryless_solve(field, 1.0, a["x0"], a["noise"]),
             {"x0": XS, "noise": NOISE}, {"x0": samples(nan_ok=True), "noise": samples(nan_ok=True)}),
        Spec("flows.memoryless_sample",
             lambda **a: flows.memoryless_sample(KEY, field, 1.0, a["num_samples"], a["dim"],
                                                 num_steps=a["num_steps"], ts=a["ts"]),
             {"num_samples": N, "dim": D, "num_steps": K, "ts": ts},
             {"num_samples": count(1), "dim": count(1), "ts": grid()}),
        Spec("flows.memoryless_sample[num_steps]",
             lambda **a: flows.memoryless_sample(KEY, field, 1.0, N, D, num_steps=a["num_steps"]),
             {"num_steps": K}, {"num_steps": count(2)}),
        Spec("flows.path_log_weight",
             lambda **a: flows.path_log_weight(field, 1.0, base, a["trajectory"], COEFS),
             {"trajectory": TRAJ}, {"trajectory": samples(batched=False)}),
        Spec("flows.memoryless_sample_and_log_weight",
             lambda **a: flows.memoryless_sample_and_log_weight(KEY, field, 1.0, base, a["num_samples"], a["dim"],
                                                                num_steps=a["num_steps"], ts=a["ts"]),
             {"num_samples": N, "dim": D, "num_steps": K, "ts": ts},
             {"num_samples": count(1), "dim": count(1), "ts": grid()}),
    ]


def _adjoint_specs():
    opt = optax.sgd(0.01)
    batch = flows.AdjointMatchingBatch(jnp.stack([TRAJ] * N), jnp.stack([TRAJ] * N), jnp.stack([TRAJ] * N),
                                       jnp.arange(1, K))
    kernel_kinds = {"temperature": positive(), "dim": count(1), "batch_size": count(1), "num_steps": count(2),
                    "loss_timesteps": count(1), "loss_clip": positive()}
    kernel_args = {"temperature": 1.0, "dim": D, "batch_size": N, "num_steps": K, "loss_timesteps": 1,
                   "loss_clip": 10.0}

    return [
        Spec("flows.lean_adjoint",
             lambda **a: flows.lean_adjoint(base, a["trajectory"], a["terminal"], COEFS),
             {"trajectory": TRAJ, "terminal": X1},
             {"trajectory": samples(batched=False), "terminal": samples(batched=False)}),
        Spec("flows.adjoint_matching_loss",
             lambda **a: flows.adjoint_matching_loss(
                 1.0, batch._replace(sample_weights=a["sample_weights"]), velocity_fn=field, coefficients=COEFS,
                 clip=a["clip"])[0],
             {"sample_weights": jnp.full((N,), 1.0 / N), "clip": 10.0},
             {"sample_weights": weights(), "clip": positive()}),
        Spec("flows.adjoint_matching",
             lambda **a: _run(flows.adjoint_matching(field, base, lambda x, _: reward(x), opt, a["dim"],
                                                    temperature=a["temperature"], batch_size=a["batch_size"],
                                                    num_steps=a["num_steps"], loss_timesteps=a["loss_timesteps"],
                                                    loss_clip=a["loss_clip"])),
             kernel_args, kernel_kinds, jittable=False),
        Spec("flows.exp_ft",
             lambda **a: _run(flows.exp_ft(field, base, reward, opt, a["dim"], temperature=a["temperature"],
                                          batch_size=a["batch_size"], num_steps=a["num_steps"],
                                          loss_timesteps=a["loss_timesteps"], loss_clip=a["loss_clip"])),
             kernel_args, kernel_kinds, jittable=False),
        Spec("flows.fit_adjoint_matching",
             lambda **a: flows.fit_adjoint_matching(
                 KEY, flows.exp_ft(field, base, reward, opt, D, batch_size=N, num_steps=K), jnp.ones(()),
                 num_steps=a["num_steps"], checkpoint_every=a["checkpoint_every"], progress=False).state.params,
             {"num_steps": 1, "checkpoint_every": 10}, {"num_steps": count(0), "checkpoint_every": count(1)},
             jittable=False),
    ]


def _tfft_specs():
    opt = optax.sgd(0.01)
    sample_fn = lambda k, n: jax.random.normal(k, (n, D))  # noqa: E731
    proposal_fn = lambda k, n: (jax.random.normal(k, (n, D)) + 1.0, jnp.zeros(n))  # noqa: E731
    levels = {"quantile_level": level(), "temperature": positive(), "side": choice("upper", "lower")}
    level_args = {"quantile_level": 0.8, "temperature": 1.0, "side": "upper"}
    return [
        Spec("flows.tfft_reward",
             lambda **a: jax.vmap(flows.tfft_reward(reward, 0.5, a["quantile_level"], a["side"]))(XS),
             {"quantile_level": 0.8, "side": "upper"}, {"quantile_level": level(), "side": choice("upper", "lower")}),
        Spec("flows.tfft_threshold",
             lambda **a: flows.tfft_threshold(KEY, sample_fn, reward, quantile_level=a["quantile_level"],
                                              temperature=a["temperature"], side=a["side"],
                                              num_samples=a["num_samples"]).t_star,
             {**level_args, "num_samples": 16}, {**levels, "num_samples": count(2)}, jittable=False),
        Spec("flows.tfft_stratified_threshold",
             lambda **a: flows.tfft_stratified_threshold(
                 KEY, sample_fn, proposal_fn, reward, quantile_level=a["quantile_level"],
                 temperature=a["temperature"], side=a["side"], num_samples=a["num_samples"],
                 stratify_level=a["stratify_level"]).t_star,
             {**level_args, "num_samples": 16, "stratify_level": 0.75},
             {**levels, "num_samples": count(2), "stratify_level": level()}, jittable=False),
        Spec("flows.tfft",
             lambda **a: _run(flows.tfft(field, base, reward, opt, a["dim"], quantile_level=a["quantile_level"],
                                         temperature=a["temperature"], side=a["side"], t_star=0.5, batch_size=N,
                                         num_steps=K)),
             {**level_args, "dim": D}, {**levels, "dim": count(1)}, jittable=False),
        Spec("flows.tfft_fine_tune",
             lambda **a: flows.tfft_fine_tune(
                 KEY, field, jnp.ones(()), reward, a["dim"], quantile_level=a["quantile_level"],
                 temperature=a["temperature"], side=a["side"], num_steps=a["num_steps"], num_offline=a["num_offline"],
                 stratify_level=a["stratify_level"], tail_tolerance=a["tail_tolerance"], proposal_steps=0,
                 num_check=0, grid_steps=K, batch_size=N, progress=False).t_star,
             {**level_args, "dim": D, "num_steps": 1, "num_offline": 16, "stratify_level": 0.9,
              "tail_tolerance": 0.1},
             {**levels, "dim": count(1), "num_steps": count(1), "num_offline": count(2), "stratify_level": level(),
              "tail_tolerance": positive()}, jittable=False),
    ]


def _fdc_specs():
    opt = optax.sgd(0.01)
    levels = {"quantile_level": level(), "temperature": positive(), "side": choice("upper", "lower")}
    level_args = {"quantile_level": 0.8, "temperature": 1.0, "side": "upper"}
    eta = Kind({"below temperature": 0.5, "zero": 0.0, "negative": -1.0, "nan": NAN, "-inf": -float("inf")})
    return [
        Spec("flows.grid_distances", lambda **a: flows.grid_distances(a["log_p"], a["log_q"]),
             {"log_p": LOGP, "log_q": jax.nn.log_softmax(REWARDS)},
             {"log_p": samples(), "log_q": samples(batched=False)}),
        Spec("flows.default_eta", lambda **a: flows.default_eta(a["num_iterations"], a["temperature"]),
             {"num_iterations": 3, "temperature": 1.0}, {"num_iterations": count(1), "temperature": positive()}),
        Spec("flows.fdc_operator",
             lambda **a: flows.fdc_operator(a["log_p"], LOGP, a["rewards"], 0.2, a["eta"],
                                            quantile_level=a["quantile_level"], temperature=a["temperature"],
                                            side=a["side"]),
             {**level_args, "log_p": LOGP, "rewards": REWARDS, "eta": 2.0},
             {**levels, "log_p": samples(batched=False), "rewards": samples(batched=False), "eta": eta}),
        Spec("flows.fdc_grid",
             lambda **a: flows.fdc_grid(a["log_p_pre"], a["rewards"], quantile_level=a["quantile_level"],
                                        temperature=a["temperature"], side=a["side"],
                                        num_iterations=a["num_iterations"]).log_p,
             {**level_args, "log_p_pre": LOGP, "rewards": REWARDS, "num_iterations": 3},
             {**levels, "log_p_pre": samples(batched=False), "rewards": samples(batched=False),
              "num_iterations": count(1)}),
        Spec("flows.fdc_fine_tune",
             lambda **a: flows.fdc_fine_tune(
                 KEY, field, jnp.ones(()), reward, a["dim"], quantile_level=a["quantile_level"],
                 temperature=a["temperature"], side=a["side"], num_rounds=a["num_rounds"],
                 steps_per_round=a["steps_per_round"], num_var_samples=a["num_var_samples"],
                 grid_steps=a["grid_steps"], optimizer=opt, batch_size=N, progress=False).params,
             {**level_args, "dim": D, "num_rounds": 1, "steps_per_round": 1, "num_var_samples": 16, "grid_steps": K},
             {**levels, "dim": count(1), "num_rounds": count(1), "steps_per_round": count(1),
              "num_var_samples": count(1), "grid_steps": count(2)}, jittable=False),
    ]


SPECS: list = (_schedule_specs() + _diffusion_specs() + _gaussian_specs() + _matching_specs() + _ode_specs()
               + _sde_specs() + _adjoint_specs() + _tfft_specs() + _fdc_specs())

"""The public functions the bad-input suite probes, each with a valid call and the kinds of
the arguments it checks (see spec.py)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from tailjax import dfl, dro, flows, importance, layers, parallel, risk, stochopt, training
from tests.bad_input.spec import Spec, choice, count, level, positive, samples, weights

X = jax.random.normal(jax.random.PRNGKey(0), (64,))
W = jax.random.uniform(jax.random.PRNGKey(1), (64,), minval=0.1, maxval=1.0)
LOG_LR = 0.1 * jax.random.normal(jax.random.PRNGKey(2), (64,))
Z = jax.random.normal(jax.random.PRNGKey(3), (64, 3))


def _risk_specs():
    common = {"samples": samples(), "tail_prob": level(closed_right=True), "weights": weights(),
              "side": choice("upper", "lower")}
    valid = {"samples": X, "tail_prob": 0.1, "weights": W, "side": "upper"}
    specs = [
        Spec(f"risk.{name}", lambda fn=fn, **a: fn(a["samples"], a["tail_prob"], weights=a["weights"], side=a["side"]),
             valid, common)
        for name, fn in [("var", risk.var), ("cvar", risk.cvar), ("var_cvar", risk.var_cvar)]
    ]
    specs.append(Spec(
        "risk.mean_cvar",
        lambda **a: risk.mean_cvar(a["samples"], a["tail_prob"], a["risk_weight"], weights=a["weights"]),
        {"samples": X, "tail_prob": 0.1, "risk_weight": 0.5, "weights": W},
        {"samples": samples(), "tail_prob": level(closed_right=True), "weights": weights()},
    ))
    specs.append(Spec(
        "risk.ru_objective",
        lambda **a: risk.ru_objective(a["u"], a["losses"], a["tail_prob"], weights=a["weights"]),
        {"u": 0.5, "losses": X, "tail_prob": 0.1, "weights": W},
        {"losses": samples(), "tail_prob": level(closed_right=True), "weights": weights()},
    ))
    large = {"samples": samples(), "tail_prob": level(closed_right=True), "side": choice("upper", "lower")}
    for name, fn in [("cvar_large", risk.cvar_large), ("var_large", risk.var_large)]:
        specs.append(Spec(f"risk.{name}", lambda fn=fn, **a: fn(a["samples"], a["tail_prob"], side=a["side"]),
                          {"samples": X, "tail_prob": 0.1, "side": "upper"}, large))
    threshold = {"rewards": samples(batched=False), "quantile_level": level(), "temperature": positive(),
                 "side": choice("upper", "lower"), "weights": weights()}
    valid_t = {"rewards": X, "quantile_level": 0.8, "temperature": 1.0, "side": "upper", "weights": W}
    specs.append(Spec(
        "risk.solve_threshold",
        lambda **a: risk.solve_threshold(a["rewards"], a["quantile_level"], a["temperature"], a["side"], a["weights"]),
        valid_t, threshold,
    ))
    specs.append(Spec(
        "risk.threshold_objective",
        lambda **a: risk.threshold_objective(0.5, a["rewards"], a["quantile_level"], a["temperature"], a["side"],
                                             weights=a["weights"]),
        valid_t, threshold,
    ))
    specs.append(Spec(
        "risk.pseudo_reward",
        lambda **a: risk.pseudo_reward(a["rewards"], 0.5, a["quantile_level"], a["side"]),
        {"rewards": X, "quantile_level": 0.8, "side": "upper"},
        {"quantile_level": level(), "side": choice("upper", "lower")},
    ))
    return specs


def _parallel_specs():
    kinds = {"samples": samples(batched=False), "tail_prob": level(closed_right=True), "weights": weights(),
             "side": choice("upper", "lower")}
    return [Spec(
        "parallel.sharded_var_cvar",
        lambda **a: parallel.sharded_var_cvar(a["samples"], a["tail_prob"], weights=a["weights"], side=a["side"]),
        {"samples": X, "tail_prob": 0.1, "weights": W, "side": "upper"}, kinds,
    )]


def _importance_specs():
    return [
        Spec("importance.is_var_cvar", lambda **a: importance.is_var_cvar(a["losses"], a["log_lr"], a["tail_prob"]),
             {"losses": X, "log_lr": LOG_LR, "tail_prob": 0.05},
             {"losses": samples(), "log_lr": samples(), "tail_prob": level()}),
        Spec("importance.is_objective_from_losses",
             lambda **a: importance.is_objective_from_losses(a["u"], a["losses"], a["log_lr"], a["tail_prob"]),
             {"u": 0.5, "losses": X, "log_lr": LOG_LR, "tail_prob": 0.05},
             {"losses": samples(), "log_lr": samples(), "tail_prob": level()}),
        Spec("importance.structuring_scale", lambda **a: importance.structuring_scale(a["h"], a["tail_prob"]),
             {"h": 1.0, "tail_prob": 0.01}, {"h": positive(), "tail_prob": level()}),
        Spec("importance.self_structuring_transform",
             lambda **a: importance.self_structuring_transform(a["x"], a["h"], a["tail_prob"], a["rho"]),
             {"x": Z[0], "h": 1.0, "tail_prob": 0.01, "rho": 1.0},
             {"h": positive(), "tail_prob": level(), "rho": positive()}),
    ]


def _stochopt_specs():
    scheme = importance.plain_scheme(importance.gaussian(jnp.zeros(3)))
    loss = lambda z, theta: z @ theta  # noqa: E731
    return [Spec(
        "stochopt.stochastic_approximation",
        lambda **a: stochopt.stochastic_approximation(
            loss, scheme, stochopt.Simplex(3), a["tail_prob"], batch_size=a["batch_size"],
            step_exponent=a["step_exponent"], risk_weight=a["risk_weight"]),
        {"tail_prob": 0.05, "batch_size": 8, "step_exponent": 0.75, "risk_weight": 0.0},
        {"tail_prob": level(), "batch_size": count(1),
         "step_exponent": level(), "risk_weight": level(closed_right=True, closed_left=True)},
        jittable=False,
    )]


def _flows_specs():
    return [Spec(
        "flows.quantile_level_annealing",
        lambda **a: flows.quantile_level_annealing(a["rewards"], a["quantile_level"], a["temperature"], "upper",
                                                   a["num_steps"], weights=a["weights"]),
        {"rewards": X, "quantile_level": 0.8, "temperature": 1.0, "num_steps": 10, "weights": W},
        {"rewards": samples(), "quantile_level": level(), "temperature": positive(), "num_steps": count(1),
         "weights": weights()},
        jittable=False,
    )]


def _dro_specs():
    return [
        Spec("dro.ppo_surrogate", lambda **a: dro.ppo_surrogate(X, X + 0.1, a["advantages"], a["clip"]),
             {"advantages": W, "clip": 0.4}, {"clip": level(), "advantages": samples()}),
        Spec("dro.kl_worst_case", lambda **a: dro.kl_worst_case(a["losses"], a["radius"]),
             {"losses": X, "radius": 0.1}, {"losses": samples(), "radius": positive()}),
        Spec("dro.dual_update", lambda **a: dro.dual_update(0.5, 0.02, a["budget"], a["lr"]),
             {"budget": 0.01, "lr": 0.1}, {"budget": positive(allow_zero=True), "lr": positive(allow_zero=True)}),
    ]


def _training_specs():
    loss = lambda p, b, k: (jnp.sum((p - b) ** 2), {})  # noqa: E731
    kernel = training.gradient_kernel(loss, optax.sgd(0.1))
    return [
        Spec("training.minibatches",
             lambda **a: training.minibatches(jax.random.PRNGKey(0), X, a["batch_size"])(0),
             {"batch_size": 8}, {"batch_size": count(1)}, jittable=False),
        Spec("training.fit",
             lambda **a: training.fit(kernel, kernel.init(jnp.zeros(())), jax.random.PRNGKey(0), a["num_steps"],
                                      batches=jnp.ones(()), checkpoint_every=a["checkpoint_every"],
                                      progress=False).state.params,
             {"num_steps": 3, "checkpoint_every": 10}, {"num_steps": count(0), "checkpoint_every": count(1)},
             jittable=False),
    ]


def _layers_specs():
    d, K = 3, 16
    poly = layers.make_polytope(jnp.zeros(d), jnp.ones(d), ineq_matrix=jnp.ones((1, d)), ineq_rhs=jnp.ones(1))
    C, c = Z[:K], Z[0]
    G, h = jnp.concatenate([jnp.eye(d), -jnp.eye(d)]), jnp.concatenate([jnp.ones(d), jnp.zeros(d)])
    solver = {"iterations": count(1), "on_failure": choice("nan", "raise", "ignore")}
    return [
        Spec("layers.cvar_decision",
             lambda **a: layers.cvar_decision(a["costs"], poly, a["tail_prob"], reg=a["reg"], weights=a["weights"],
                                              iterations=a["iterations"], on_failure=a["on_failure"]),
             {"costs": C, "tail_prob": 0.2, "reg": 0.1, "weights": W[:K], "iterations": 40, "on_failure": "nan"},
             {"costs": samples(), "tail_prob": level(closed_right=True), "reg": positive(allow_zero=True),
              "weights": weights(), **solver}),
        Spec("layers.point_decision",
             lambda **a: layers.point_decision(a["cost"], poly, reg=a["reg"], iterations=a["iterations"],
                                               on_failure=a["on_failure"]),
             {"cost": c, "reg": 0.1, "iterations": 40, "on_failure": "nan"},
             {"cost": samples(batched=False), "reg": positive(allow_zero=True), **solver}),
        Spec("layers.lp_value",
             lambda **a: layers.lp_value(a["lin"], None, None, G, h, on_failure=a["on_failure"]),
             {"lin": c, "on_failure": "nan"},
             {"lin": samples(batched=False), "on_failure": solver["on_failure"]}),
        Spec("layers.box_budget", lambda **a: layers.box_budget(a["cost"], jnp.zeros(d), jnp.ones(d), a["total"]),
             {"cost": c, "total": 1.5}, {"cost": samples(batched=False), "total": positive(allow_zero=True)}),
        Spec("layers.fractional_knapsack",
             lambda **a: layers.fractional_knapsack(a["cost"], a["weights"], a["capacity"]),
             {"cost": c, "weights": W[:d], "capacity": 1.0},
             {"cost": samples(batched=False), "weights": weights(), "capacity": positive(allow_zero=True)}),
        Spec("layers.make_polytope",
             lambda **a: layers.make_polytope(a["lower"], jnp.ones(d)).lower,
             {"lower": jnp.zeros(d)}, {"lower": samples(batched=False)}, jittable=False),
    ]


def _dfl_specs():
    d, K = 3, 16
    poly = layers.make_polytope(jnp.zeros(d), jnp.ones(d), ineq_matrix=jnp.ones((1, d)), ineq_rhs=jnp.ones(1))
    problem = dfl.make_problem(poly, sign=-1.0)
    mean, cov, w = Z[0], jnp.eye(d) + 0.5, jnp.full((d,), 1.0 / d)
    return [
        Spec("dfl.decision",
             lambda **a: dfl.decision(problem, a["samples"], a["tail_prob"], reg=a["reg"], weights=a["weights"],
                                      iterations=a["iterations"]),
             {"samples": Z[:K], "tail_prob": 0.2, "reg": 0.1, "weights": W[:K], "iterations": 40},
             {"samples": samples(), "tail_prob": level(closed_right=True), "reg": positive(allow_zero=True),
              "weights": weights(), "iterations": count(1)}),
        Spec("dfl.gaussian_cvar",
             lambda **a: dfl.gaussian_cvar(problem, a["mean"], cov, w, a["tail_prob"]),
             {"mean": mean, "tail_prob": 0.2},
             {"mean": samples(batched=False), "tail_prob": level(closed_right=True)}),
        Spec("dfl.gaussian_cvar_decision",
             lambda **a: dfl.gaussian_cvar_decision(problem, mean, cov, a["tail_prob"], root_steps=a["root_steps"]),
             {"tail_prob": 0.2, "root_steps": 40},
             {"tail_prob": level(closed_right=True), "root_steps": count(1)}),
        Spec("dfl.cvar_multiplier", lambda **a: dfl.cvar_multiplier(a["tail_prob"]),
             {"tail_prob": 0.2}, {"tail_prob": level(closed_right=True)}),
        # f(c, w) is per sample: a NaN sample gives NaN for that sample only
        Spec("dfl.objective", lambda **a: dfl.objective(problem, a["c"], w),
             {"c": Z[:K]}, {"c": samples(nan_ok=True)}),
    ]


def _more_specs():
    u = jnp.asarray(0.5)
    is_tail = {"losses": samples(), "log_lr": samples()}
    return [
        Spec("risk.tail_count", lambda **a: risk.tail_count(64, a["tail_prob"]),
             {"tail_prob": 0.1}, {"tail_prob": level(closed_right=True)}),
        Spec("risk.tail_prob_of_quantile_level",
             lambda **a: risk.tail_prob_of_quantile_level(a["quantile_level"], a["side"]),
             {"quantile_level": 0.8, "side": "upper"}, {"quantile_level": level(), "side": choice("upper", "lower")},
             jittable=False),
        Spec("importance.is_tail_expectation",
             lambda **a: importance.is_tail_expectation(a["losses"], a["log_lr"], u),
             {"losses": X, "log_lr": LOG_LR}, is_tail),
        Spec("importance.is_tail_probability",
             lambda **a: importance.is_tail_probability(a["losses"], a["log_lr"], u),
             {"losses": X, "log_lr": LOG_LR}, is_tail),
        Spec("importance.log_second_moment",
             lambda **a: importance.log_second_moment(a["losses"], a["log_lr"], u),
             {"losses": X, "log_lr": LOG_LR}, is_tail),
        Spec("flows.tilt_diagnostics",
             lambda **a: flows.tilt_diagnostics(a["rewards"], 0.5, a["quantile_level"], a["temperature"], a["side"],
                                                weights=a["weights"]),
             {"rewards": X, "quantile_level": 0.8, "temperature": 1.0, "side": "upper", "weights": W},
             {"rewards": samples(batched=False), "quantile_level": level(), "temperature": positive(),
              "side": choice("upper", "lower"), "weights": weights()}),
        Spec("dro.kl_dual", lambda **a: dro.kl_dual(a["losses"], jnp.asarray(1.0), a["radius"]),
             {"losses": X, "radius": 0.1}, {"losses": samples(), "radius": positive(allow_zero=True)}),
        Spec("stochopt.project_simplex", lambda **a: stochopt.project_simplex(a["y"], a["radius"]),
             {"y": Z[0], "radius": 1.0}, {"y": samples(batched=False), "radius": positive()}),
    ]


from tests.bad_input import specs_dfl, specs_dro, specs_flows, specs_importance  # noqa: E402

# Functions whose traced cases each compile a whole solver, sampler or trainer (0.5-3 s a case
# on two CPU cores): their traced cases run in the slow suite, their concrete ones in the fast
# one (layers.cvar_decision and risk.solve_threshold keep theirs in the fast suite).
SLOW_TRACED = {
    "dfl.decision", "dfl.dfl_plus_loss", "dfl.diff_dro_loss", "dfl.gen_dfl_loss", "dfl.kappa_decision",
    "dfl.moment_dro_decision", "dfl.gen_dfl_mean_regret", "dfl.is_decision",
    "dfl.normalized_regret", "dfl.point_decision_of", "dfl.qptl_loss", "dfl.sample_decision", "dfl.spo_plus_loss",
    "dro.corrupt", "flows.memoryless_sample", "flows.memoryless_sample_and_log_weight",
    "importance.self_structuring_oracle", "importance.self_structuring_sample", "layers.point_decision",
    "layers.solve_qp", "nn.ddpm_sample", "nn.dm_loss", "stochopt.level_method", "stochopt.solve_saa",
}


def _marked(specs):
    return [dataclasses.replace(s, slow_traced=True) if s.name in SLOW_TRACED else s for s in specs]


CORE_SPECS = _marked(_risk_specs() + _parallel_specs() + _importance_specs() + _stochopt_specs() + _flows_specs()
                     + _dro_specs() + _training_specs() + _more_specs())
# One test file per area (``test_bad_input_<area>.py``), so that pytest-xdist's loadfile
# spreads them over workers.
AREA_SPECS = {"importance": _marked(specs_importance.SPECS), "flows": _marked(specs_flows.SPECS),
              "dro": _marked(specs_dro.SPECS), "dfl": _marked(specs_dfl.SPECS),
              "layers": _marked(_layers_specs() + _dfl_specs())}
SPECS = CORE_SPECS + sum(AREA_SPECS.values(), [])

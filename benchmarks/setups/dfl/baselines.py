"""The Pred-DFL baselines by name: the registry of the benchmarks (method name -> loss), the
options each loss takes, and two training recipes: a fixed number of epochs
(:func:`train_baseline`) and the converged, tuned one of the Table 1 comparisons
(:func:`tune_baseline`: early stopping on validation regret with patience, up to
``max_epochs`` epochs, learning rate and predictor (linear or one-hidden-layer MLP) chosen
on the validation split). Diff-DRO's ambiguity set takes its covariance from the training
rows (:func:`tailjax.dfl.residual_covariance`); its validation and evaluation decisions are
the distributionally robust ones at the prediction.
"""

from __future__ import annotations

import pathlib
from typing import Any, NamedTuple

import jax
import numpy as np

from tailjax.dfl import (
    ProblemInstance,
    baseline_decisions,
    contrastive_map_loss,
    dfl_plus_loss,
    dfl_plus_sigma,
    diff_dro_loss,
    fit_baseline,
    listwise_ltr_loss,
    log_mse_loss,
    moment_dro_decision,
    mse_loss,
    nce_loss,
    pairwise_ltr_loss,
    qptl_loss,
    residual_covariance,
    spo_plus_loss,
)
from tailjax.nn import LinearPredictor, LogLinkPredictor, MLPPredictor
from tailjax.training import FitResult

__all__ = ["BASELINES", "METHODS", "POOL_METHODS", "loss_options", "TrainedBaseline", "train_baseline",
           "tune_baseline", "decide_baseline"]

BASELINES = {
    "mse": mse_loss,  # two-stage PTO
    "mse_log": log_mse_loss,  # two-stage PTO on log costs, deciding on exp(g(x)) (positive costs)
    "spo+": spo_plus_loss,
    "spo+_log": spo_plus_loss,  # SPO+ of the positive prediction exp(g(x)) (a log link; positive costs)
    "nce": nce_loss,
    "map": contrastive_map_loss,
    "pairwise": pairwise_ltr_loss,
    "listwise": listwise_ltr_loss,
    "dfl": qptl_loss,  # QPTL, reg = problem.reg
    "dfl+": dfl_plus_loss,  # Pred-DFL+
    "diff-dro": diff_dro_loss,  # worst-case CVaR over a moment ambiguity set (Ma, Ning & Du 2024)
}
# the decision-focused losses again on the positive prediction exp(g(x)) (a log link, as
# "spo+_log"): the shortest path's strongest baselines, whose costs are positive
BASELINES.update({f"{m}_log": BASELINES[m] for m in ("nce", "map", "pairwise", "listwise", "dfl", "dfl+")})
METHODS = tuple(BASELINES)
LOG_LINK = tuple(m for m in METHODS if m.endswith("_log"))  # wrapped in LogLinkPredictor: positive costs only
POOL_METHODS = tuple(m + tag for m in ("nce", "map", "pairwise", "listwise") for tag in ("", "_log"))  # read the solution cache


def _base(method: str) -> str:
    """The loss's name without its log link (``"mse_log"`` keeps it: MSE on log costs)."""
    return method[: -len("_log")] if method in LOG_LINK and method != "mse_log" else method


def loss_options(method: str, *, tail_prob: float = 1.0, num_samples: int = 16, sigma: Any = None,
                 pool_size: int = 32, margin: float = 0.1, temperature: float = 1.0, cov: Any = None,
                 radius: float = 0.0) -> dict:
    """The keyword options of ``BASELINES[method]`` (``tail_prob`` is the paper's alpha)."""
    if method not in BASELINES:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    method = _base(method)
    if method in POOL_METHODS:
        extra = {"pairwise": {"margin": margin}, "listwise": {"temperature": temperature}}
        return {"pool_size": pool_size, **extra.get(method, {})}
    if method == "dfl+":
        return {"sigma": sigma, "tail_prob": tail_prob, "num_samples": num_samples}
    if method == "diff-dro":
        return {"cov": cov, "tail_prob": tail_prob, "radius": radius}
    return {}


class TrainedBaseline(NamedTuple):
    method: str
    predictor: Any
    params: Any
    sigma: float | None  # Pred-DFL+'s sampling scale (None: point decisions)
    result: FitResult
    choice: dict | None = None  # tune_baseline: the chosen lr/predictor and the grid's scores
    ambiguity: tuple | None = None  # Diff-DRO: (cov, radius) of its ambiguity set


def train_baseline(method: str, key: jax.Array, instance: ProblemInstance, features: np.ndarray,
                   costs: np.ndarray, *, epochs: int = 10, batch_size: int = 32, learning_rate: float = 1e-2,
                   tail_prob: float = 1.0, num_samples: int = 16, solve_ratio: float = 0.0,
                   predictor: Any = None, validation: Any = None, patience: int | None = None,
                   checkpoint_path: Any = None, run: Any = None, **options: Any) -> TrainedBaseline:
    """Train ``method`` for ``epochs`` epochs (a linear predictor unless given); Pred-DFL+'s
    sigma is half the mean per-coordinate sd of the training costs; the ``"..._log"`` methods
    wrap the predictor in :class:`~tailjax.nn.LogLinkPredictor`; ``solve_ratio`` applies to the pool
    methods only. ``validation=(x, c)``: keep the epoch of lowest validation
    regret (checked every epoch), ``patience`` epochs without improvement stop.
    ``checkpoint_path``: the training state is saved there every 100 steps and at the end, and
    a run finds its own there and goes on from it (``run``, a plain description of the data
    and settings, is recorded with it: another run's checkpoint is refused)."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    sigma = dfl_plus_sigma(costs) if _base(method) == "dfl+" else None
    ambiguity = (residual_covariance(features, costs), float(options.pop("radius", 0.0))) \
        if method == "diff-dro" else None
    predictor = LinearPredictor(np.shape(costs)[1]) if predictor is None else predictor
    if method in LOG_LINK:
        if not np.all(np.asarray(costs) > 0):
            raise ValueError(f"costs must be positive for method {method!r} (a log link)")
        predictor = LogLinkPredictor(predictor)
    steps_per_epoch = max(1, np.shape(features)[0] // batch_size)
    result = fit_baseline(
        key, predictor, instance, features, costs, loss=BASELINES[method], num_steps=epochs * steps_per_epoch,
        batch_size=batch_size, learning_rate=learning_rate,
        solve_ratio=solve_ratio if method in POOL_METHODS else 0.0,
        validation=validation, patience=patience if validation is not None else None,
        eval_every=steps_per_epoch if validation is not None else None,
        decide=None if ambiguity is None else _dro_decide(instance, ambiguity, tail_prob),
        checkpoint_path=checkpoint_path, config=run,
        **loss_options(method, tail_prob=tail_prob, num_samples=num_samples, sigma=sigma,
                       **({} if ambiguity is None else dict(cov=ambiguity[0], radius=ambiguity[1])), **options),
    )
    return TrainedBaseline(method, predictor, result.state.params, sigma, result, ambiguity=ambiguity)


def _dro_decide(instance: ProblemInstance, ambiguity: tuple, tail_prob: float):
    cov, radius = ambiguity
    return lambda c_hat: moment_dro_decision(instance.problem, c_hat, cov, tail_prob, radius=radius)


def tune_baseline(method: str, key: jax.Array, instance: ProblemInstance, features: np.ndarray,
                  costs: np.ndarray, validation: tuple, *, learning_rates=(1e-3, 1e-2, 1e-1),
                  predictors=("linear", "mlp"), hidden=(32,), max_epochs: int = 200, patience: int = 20,
                  batch_size: int = 32, tail_prob: float = 1.0, checkpoint_dir: Any = None, run: Any = None,
                  **kwargs: Any) -> TrainedBaseline:
    """The converged, tuned baseline: for each learning rate and predictor kind, train with
    early stopping on ``validation=(x_val, c_val)`` (up to ``max_epochs`` epochs, ``patience``
    epochs without improvement), and keep the run of lowest validation regret. The returned
    ``choice`` holds the chosen settings, every run's best validation regret, its stopping
    epoch and its validation curve ``[(epoch, regret), ...]``.

    ``checkpoint_dir``: each setting's training checkpoints there (``train_baseline``'s
    ``checkpoint_path``), so that a tuning cut short goes on where it stopped and finished
    settings are not trained again; ``run`` describes the data (e.g. the problem, degree and
    seed) and is checked on resume with the method and the setting."""
    best, runs = None, []
    d = np.shape(costs)[1]
    steps_per_epoch = max(1, np.shape(features)[0] // batch_size)
    folder = None if checkpoint_dir is None else pathlib.Path(checkpoint_dir)
    for kind in predictors:
        for lr in learning_rates:
            path = None if folder is None else folder / f"{method}_{kind}_lr{lr:g}.ckpt"
            setting = dict(run=run, method=method, predictor=kind, hidden=list(hidden), max_epochs=max_epochs,
                           patience=patience, tail_prob=tail_prob)
            trained = train_baseline(method, key, instance, features, costs, epochs=max_epochs,
                                     batch_size=batch_size, learning_rate=lr, tail_prob=tail_prob,
                                     predictor=LinearPredictor(d) if kind == "linear" else MLPPredictor(d, tuple(hidden)), validation=validation,
                                     patience=patience, checkpoint_path=path,
                                     run=None if path is None else setting, **kwargs)
            res = trained.result
            curve = [(int(s) / steps_per_epoch, float(v)) for s, v in res.evaluations]
            score = min(v for _, v in curve)
            runs.append(dict(predictor=kind, learning_rate=lr, best=score, best_epoch=int(res.best_step) / steps_per_epoch,
                             epochs_run=curve[-1][0], curve=curve))
            if best is None or score < best[0]:
                best = (score, trained, kind, lr)
    score, trained, kind, lr = best
    return trained._replace(choice=dict(predictor=kind, learning_rate=lr, validation_regret=score, runs=runs))


def decide_baseline(trained: TrainedBaseline, features: np.ndarray, instance: ProblemInstance, *,
                    tail_prob: float = 1.0, key: jax.Array | None = None, num_samples: int = 64):
    """Evaluation decisions ``(N, d)`` of a trained baseline (``reg = 0``; Diff-DRO's robust
    decision at ``tail_prob``)."""
    decide = None if trained.ambiguity is None else _dro_decide(instance, trained.ambiguity, tail_prob)
    return baseline_decisions(trained.predictor, trained.params, features, instance, sigma=trained.sigma,
                              tail_prob=tail_prob, key=key, num_samples=num_samples, decide=decide)

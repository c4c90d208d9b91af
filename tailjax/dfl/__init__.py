"""Decision-focused learning: decision problems with their true p(c|x)
(:mod:`tailjax.dfl.problems`), regret metrics, the NLL-trained proxy q(c|x), Gen-DFL and the
Pred-DFL baselines (:mod:`tailjax.dfl.baselines`).

Every trainer is a :class:`~tailjax.base.Kernel` on :func:`tailjax.training.gradient_kernel`
with a ``fit_*`` wrapper on :func:`tailjax.training.fit`:

- Gen-DFL: :func:`gen_dfl_loss`, kernel :func:`gen_dfl`, :func:`fit_gen_dfl`
  (:class:`GenDFLConfig`: ``tail_prob`` is the paper's alpha, ``regret_weight`` its beta,
  ``nll_weight`` its gamma), decisions :func:`gen_dfl_decisions`, :func:`proxy_decisions`;
- the proxy: :func:`nll_loss`, :func:`nll_kernel`, :func:`fit_nll`, :func:`fit_proxy`;
- evaluation: :func:`cvar_regret` (eq. (9)) against an exact
  :func:`gaussian_regret_reference` (Gaussian p(c|x): closed-form CVaR, SOCP w*) or a sampled
  :func:`regret_reference` (fresh evaluation draws);
- the baselines: :func:`mse_loss`, :func:`spo_plus_loss`, ..., :func:`diff_dro_loss` (with
  :func:`moment_dro_decision`), :func:`baseline_kernel`, :func:`fit_baseline`,
  :func:`baseline_decisions`.

The per-problem constructors (``portfolio_instance``, ``shortest_path_gen_data``, ...) are
in :mod:`tailjax.dfl.problems`.
"""

from tailjax.dfl.baselines import (
    BaselineState,
    DFLBatch,
    baseline_decisions,
    baseline_kernel,
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
    worst_case_cvar_multiplier,
)
from tailjax.dfl.gen_dfl import (
    GenDFLAux,
    GenDFLConfig,
    gen_dfl,
    gen_dfl_decisions,
    gen_dfl_loss,
    gen_dfl_mean_regret,
    gen_dfl_regret,
    proxy_decisions,
    sample_decision,
)
from tailjax.dfl.exact import (
    GaussianReference,
    cvar_multiplier,
    gaussian_cvar,
    gaussian_cvar_decision,
    gaussian_regret_reference,
    kappa_decision,
)
from tailjax.dfl.gen_dfl_fit import fit_gen_dfl
from tailjax.dfl.gen_dfl_is import is_decision, is_samples, tail_shift
from tailjax.dfl.metrics import RegretReference, cvar_regret, normalized_regret, regret_reference
from tailjax.dfl.problems import (
    DecisionProblem,
    ProblemInstance,
    decision,
    make_instance,
    make_problem,
    objective,
    point_decision_of,
)
from tailjax.dfl.proxy import Proxy, fit_nll, fit_proxy, init_flow, nll_kernel, nll_loss

__all__ = [
    # problems
    "DecisionProblem",
    "ProblemInstance",
    "make_problem",
    "make_instance",
    "objective",
    "decision",
    "point_decision_of",
    # metrics
    "RegretReference",
    "regret_reference",
    "cvar_regret",
    "normalized_regret",
    "GaussianReference",
    "gaussian_regret_reference",
    "gaussian_cvar",
    "gaussian_cvar_decision",
    "kappa_decision",
    "cvar_multiplier",
    # proxy
    "nll_loss",
    "nll_kernel",
    "fit_nll",
    "init_flow",
    "Proxy",
    "fit_proxy",
    # Gen-DFL
    "GenDFLConfig",
    "GenDFLAux",
    "gen_dfl_loss",
    "gen_dfl_regret",
    "gen_dfl_mean_regret",
    "gen_dfl",
    "fit_gen_dfl",
    "sample_decision",
    "proxy_decisions",
    "gen_dfl_decisions",
    "is_samples",
    "is_decision",
    "tail_shift",
    # baselines
    "DFLBatch",
    "mse_loss",
    "log_mse_loss",
    "spo_plus_loss",
    "nce_loss",
    "contrastive_map_loss",
    "pairwise_ltr_loss",
    "listwise_ltr_loss",
    "qptl_loss",
    "dfl_plus_loss",
    "diff_dro_loss",
    "moment_dro_decision",
    "worst_case_cvar_multiplier",
    "residual_covariance",
    "BaselineState",
    "baseline_kernel",
    "fit_baseline",
    "baseline_decisions",
    "dfl_plus_sigma",
]

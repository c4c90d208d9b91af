"""Gen-DFL headline in small form: normalised CVaR regret (%) of Gen-DFL against two-stage PTO
(MSE) and the NLL-only flow on a small fully-invested portfolio (sigma = 20, deg = 4,
tail_prob = 0.1, the paper's alpha), one seed, measured on this machine.

Two scores on the same true-distribution samples: eq. (9) (the CVaR of the pathwise regret
f(c, w_hat) - f(c, w*)) and the CVaR gap CVaR f(c, w_hat) - CVaR f(c, w*) (the quantity the
paper authors' public code reports), both over |E f(c, w*)|. Calibration rows: ``oracle SAA``
is the SAA decision on K_eval samples of the *true* p(c|x) (a perfect generative model),
``true mean`` the decision at the true mean (a perfect point predictor). Model selection on a
held-out 20% of the training rows (validation NLL for the flow, validation regret under q for
Gen-DFL, which starts from the NLL flow and trains on the normalised regret, regret_weight =
10, the paper's beta).
"""

from __future__ import annotations

import pathlib
import time

import numpy as np

from benchmarks import _harness as harness
from benchmarks.setups.dfl import SIZES, TAIL_PROB, evaluate, make_data

CONFIG = dict(SIZES["small"], dim=8, n_train=160, n_test=12, K=24, K_eval=48, Kq=48, Kref=128, steps=200,
              proxy_steps=200, ref_samples=500, eval_every=10, baseline_epochs=12)
METHODS = ("gen_dfl", "nll_flow", "mse")
ROWS = (("Gen-DFL", "gen_dfl"), ("NLL flow", "nll_flow"), ("PTO (MSE)", "mse"),
        ("oracle SAA", "oracle_saa"), ("true mean", "true_mean"))
FORMS = ("cvar_of_difference", "difference_of_cvars")


def run(out_dir: pathlib.Path) -> str:
    t0 = time.perf_counter()
    # 8 assets: fully invested, as w* under 1^T w <= 1 invests nothing on some rows at this size
    inst, x, c = make_data("portfolio", 4, 0, CONFIG["n_train"] + CONFIG["n_test"], CONFIG["dim"],
                           budget="equality")
    result, *_ = evaluate(CONFIG, inst, x, c, CONFIG["n_train"], 0, methods=METHODS, model=inst.model,
                          log=lambda s: None, problem_name="portfolio")
    regrets = {m: {f: result[m][(TAIL_PROB, f)] for f in FORMS} for _, m in ROWS}
    elapsed = time.perf_counter() - t0
    harness.write_json(out_dir, "d_gen_dfl", dict(
        problem="portfolio (fully invested)", dim=CONFIG["dim"], deg=4, sigma=20.0, tail_prob=TAIL_PROB,
        n_train=CONFIG["n_train"], n_test=CONFIG["n_test"], regret_percent=regrets, seconds=elapsed))
    fig, ax = harness.figure(figsize=(5.5, 3))
    pos = np.arange(len(ROWS))
    for j, (f, label) in enumerate(zip(FORMS, ("eq. (9)", "CVaR gap"))):
        ax.bar(pos + 0.4 * j - 0.2, [regrets[m][f] for _, m in ROWS], width=0.4, label=label)
    ax.set_xticks(pos, [name for name, _ in ROWS], rotation=20)
    ax.set_ylabel("normalised CVaR regret (%)")
    ax.set_title(f"portfolio, tail_prob = {TAIL_PROB}")
    ax.legend(fontsize=7)
    harness.save_figure(fig, out_dir, "d_gen_dfl")
    rows = [{"method": name, "eq. (9) %": regrets[m][FORMS[0]], "CVaR gap %": regrets[m][FORMS[1]]}
            for name, m in ROWS]
    device = harness.environment()["device"]
    formats = {"eq. (9) %": ".1f", "CVaR gap %": ".1f"}
    return (harness.markdown_table(rows, ["method", "eq. (9) %", "CVaR gap %"], formats)
            + f"\n({elapsed:.0f} s on {device}; d={CONFIG['dim']}, n={CONFIG['n_train']})")

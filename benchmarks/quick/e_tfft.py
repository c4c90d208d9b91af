"""Quick TFFT demo: Table 4's exact targets by quadrature, and a small fine-tuned EXP-FT / L-TFFT
run on CPU (flow matching on N(0, I_2), adjoint matching, r = x1 + x2, alpha = 1)."""

from __future__ import annotations

import pathlib
import time

import jax
import numpy as np
import optax

from benchmarks import _harness as harness
from benchmarks.setups.flows import PAPER, TEMPERATURE, metrics, pretrain, reward, table4_exact
from tailjax.flows import exp_ft, fit_adjoint_matching, memoryless_sample, tfft_fine_tune

GRID, BATCH, FT_STEPS, LR = 20, 256, 250, 1e-3


def run(out_dir: pathlib.Path) -> str:
    t0 = time.perf_counter()
    exact = table4_exact(grid_points=150_001)
    t_exact = time.perf_counter() - t0
    k_data, k_pre, k_ft, k_eval = jax.random.split(jax.random.key(0), 4)
    t0 = time.perf_counter()
    field, base_params, _ = pretrain(k_pre, jax.random.normal(k_data, (50_000, 2)), (64, 64), num_steps=800,
                                     batch_size=512, lr=2e-3)
    base = lambda x, t: field(base_params, x, t)
    sampler = jax.jit(lambda k, p: memoryless_sample(k, field, p, 50_000, 2, num_steps=GRID))
    kernel = exp_ft(field, base, reward, optax.adam(LR), 2, temperature=TEMPERATURE, batch_size=BATCH, num_steps=GRID)
    exp_params = fit_adjoint_matching(jax.random.fold_in(k_ft, 1), kernel, base_params, num_steps=FT_STEPS,
                                      progress=False).state.params
    left = tfft_fine_tune(jax.random.fold_in(k_ft, 2), field, base_params, reward, 2, quantile_level=0.2,
                          temperature=TEMPERATURE, side="lower", num_steps=FT_STEPS, num_offline=10_000,
                          optimizer=optax.adam(LR), grid_steps=GRID, batch_size=BATCH, progress=False)
    samples = {name: np.asarray(sampler(k_eval, p).sum(-1))
               for name, p in (("Pre-trained", base_params), ("EXP-FT", exp_params), ("L-TFFT", left.params))}
    fine_tuned = {name: metrics(r) for name, r in samples.items()}
    t_fit = time.perf_counter() - t0
    harness.write_json(out_dir, "e_tfft", {
        "exact": {k: v["metrics"] for k, v in exact.items() if k != "u"},
        "t_star_exact": {k: exact[k]["t_star"] for k in ("L-TFFT", "R-TFFT")},
        "t_star_L_stage1": float(left.t_star), "fine_tuned": fine_tuned, "paper": PAPER,
        "seconds": {"quadrature": round(t_exact, 1), "pretrain_finetune_sample": round(t_fit, 1)},
        "setup": f"flow MLP (64, 64), 800 flow-matching steps; adjoint matching {FT_STEPS} steps, batch {BATCH}, "
                 f"{GRID}-step memoryless grid; 5e4 samples each"})
    _plot(exact, samples, out_dir)
    fmt = lambda values, spec: " / ".join(format(v, spec) for v in values)
    rows = [{"method": name, "exact (quadrature)": fmt(exact[name]["metrics"], ".3f"), "paper": fmt(PAPER[name], ".2f"),
             "fine-tuned (CPU demo)": fmt(fine_tuned[name], ".3f") if name in fine_tuned else "(benchmarks/seeds/tfft.py)"}
            for name in ("Pre-trained", "EXP-FT", "L-TFFT", "R-TFFT")]
    return "\n".join([
        "TFFT Table 4 (N(0, I2) prior, r = x1 + x2, alpha = 1): E[r] / R-CVaR_0.8 / L-CVaR_0.2",
        harness.markdown_table(rows, ["method", "exact (quadrature)", "paper", "fine-tuned (CPU demo)"]),
        f"t* exact: L {exact['L-TFFT']['t_star']:.4f}, R {exact['R-TFFT']['t_star']:.4f}; "
        f"L-TFFT Stage 1 from 10^4 samples: {float(left.t_star):.4f}",
        f"time: quadrature {t_exact:.1f} s, pre-train + 2 fine-tunes + sampling {t_fit:.1f} s",
    ])


def _plot(exact, samples, out_dir):
    u = np.asarray(exact["u"])
    fig, axes = harness.figure(1, 3, figsize=(10, 3), sharey=True)
    for ax, name in zip(axes, samples):
        ax.plot(u, exact[name]["quantiles"], "k-", label="exact target")
        ax.plot(u, np.quantile(samples[name], u), "C0--", label="fine-tuned flow")
        ax.set(title=name, xlabel="u")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("reward quantile")
    harness.save_figure(fig, out_dir, "e_tfft")

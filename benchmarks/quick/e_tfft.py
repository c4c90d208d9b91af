"""Quick TFFT demo: Table 4's exact targets by quadrature, and a small fine-tuned EXP-FT / L-TFFT
run on CPU (flow matching on N(0, I_2), adjoint matching, r = x1 + x2, alpha = 1)."""

from __future__ import annotations

import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks.seeds.tfft import ALPHA, PAPER, _field, g_of, metrics, piecewise, table4_exact
from tailjax.flows.adjoint import adjoint_matching
from tailjax.flows.finetune import fine_tune
from tailjax.flows.matching import fit_flow_matching
from tailjax.flows.sde import memoryless_sample
from tailjax.flows.tfft import tfft_threshold


def run(out_dir: pathlib.Path) -> str:
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    exact = table4_exact(grid_points=150_001)
    t_exact = time.perf_counter() - t0
    module, field = _field((64, 64))
    key = jax.random.key(0)
    k_init, k_data, k_pre, k_off, k_ft, k_eval = jax.random.split(key, 6)
    t0 = time.perf_counter()
    pre = fit_flow_matching(k_pre, field, module.init(k_init, jnp.zeros(2), 0.0), jax.random.normal(k_data, (50_000, 2)),
                            800, batch_size=512, optimizer=optax.adam(optax.cosine_decay_schedule(2e-3, 800, 0.05)),
                            progress=False)
    base_params = pre.state.params
    reward = lambda x: x[0] + x[1]
    base = lambda x, t: field(base_params, x, t)
    kernel = adjoint_matching(field, base, lambda x, p: g_of(reward(x), p), optax.adam(1e-3), 2, reward_scale=1 / ALPHA,
                              batch_size=256, num_steps=20, example_reward_params=np.zeros(4, np.float32))
    sampler = jax.jit(lambda k, p: memoryless_sample(k, field, p, 50_000, 2, num_steps=20))
    offline = lambda k, n: memoryless_sample(k, field, base_params, n, 2, num_steps=20)
    th = tfft_threshold(k_off, offline, reward, beta=0.2, alpha=ALPHA, side="left", num_samples=10_000)
    rows, samples = {}, {}
    for name, p_fn in (("Pre-trained", None), ("EXP-FT", piecewise("exp", 0, 0)),
                       ("L-TFFT", piecewise("left", float(th.t_star), 0.2))):
        params = base_params
        if p_fn is not None:
            params = fine_tune(jax.random.fold_in(k_ft, len(rows)), kernel, base_params, 250,
                               reward_params_fn=lambda i, p=p_fn: p, progress=False).state.params
        r = np.asarray(sampler(k_eval, params).sum(-1))
        samples[name] = r
        rows[name] = metrics(r)
    t_fit = time.perf_counter() - t0
    result = {"exact": {k: v["metrics"] for k, v in exact.items() if k != "u"},
              "t_star_exact": {k: exact[k]["t_star"] for k in ("L-TFFT", "R-TFFT")},
              "t_star_L_stage1": float(th.t_star), "fine_tuned": rows, "paper": PAPER,
              "seconds": {"quadrature": round(t_exact, 1), "pretrain_finetune_sample": round(t_fit, 1)},
              "setup": "flow MLP (64, 64), 800 flow-matching steps; adjoint matching 250 steps, batch 256, 20-step "
                       "memoryless grid; 5e4 samples each"}
    (out_dir / "e_tfft.json").write_text(json.dumps(result, indent=2))
    _plot(exact, samples, out_dir / "e_tfft.png")
    lines = ["TFFT Table 4 (N(0, I2) prior, r = x1 + x2, alpha = 1): E[r] / R-CVaR_0.8 / L-CVaR_0.2",
             f"{'method':12s} {'exact (quadrature)':>24s} {'paper':>20s} {'fine-tuned (CPU demo)':>24s}"]
    for name in ("Pre-trained", "EXP-FT", "L-TFFT", "R-TFFT"):
        ex = " / ".join(f"{v:6.3f}" for v in result["exact"][name])
        pp = " / ".join(f"{v:5.2f}" for v in PAPER[name])
        ft = " / ".join(f"{v:6.3f}" for v in rows[name]) if name in rows else "(see benchmarks/seeds/tfft.py)"
        lines.append(f"{name:12s} {ex:>24s} {pp:>20s} {ft:>24s}")
    lines.append(f"t* exact: L {result['t_star_exact']['L-TFFT']:.4f}, R {result['t_star_exact']['R-TFFT']:.4f}; "
                 f"L-TFFT Stage 1 from 10^4 samples: {result['t_star_L_stage1']:.4f}")
    lines.append(f"time: quadrature {t_exact:.1f} s, pre-train + 2 fine-tunes + sampling {t_fit:.1f} s")
    return "\n".join(lines)


def _plot(exact, samples, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    u = np.asarray(exact["u"])
    fig, axes = plt.subplots(1, 3, figsize=(10, 3), sharey=True)
    for ax, name in zip(axes, samples):
        ax.plot(u, exact[name]["quantiles"], "k-", label="exact target")
        ax.plot(u, np.quantile(samples[name], u), "C0--", label="fine-tuned flow")
        ax.set(title=name, xlabel="u")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("reward quantile")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""Speed of GAS-DRO's inner step (JAX, one jitted function) against the same step written in
plain PyTorch, on the same device in the same run, plus the wall time of a full GAS-DRO run
on the carbon task. The paper reports 1897 s for GAS-DRO (diffusion) on the carbon task on
an RTX 6000 Ada (143 s for ML); goals here: >= 5x faster step than PyTorch, < 300 s run.

One inner step (paper settings, Appendix D.3): draw 64 DDPM trajectories of T = 500 steps,
score them with the LSTM forecaster, 10 Adam epochs (lr 1e-5) on the clipped PPO surrogate
(likelihood ratio over the last T' = 15 steps, kappa = 0.4) minus mu J_DM on a nominal
batch, then the dual update. Both implementations start from the same weights; the script
checks that they compute the same trajectory log-probabilities and rewards. PyTorch is
optional: without it only the JAX side is timed.

The PyTorch peer runs in every mode of ``--torch-modes`` in the same process (see
``_torch_modes``): ``eager``; ``compile``, ``torch.compile`` in its default mode; and
``cudagraphs``, ``torch.compile(mode="reduce-overhead")`` with CUDA-graph capture (CUDA only;
skipped with a reason elsewhere). A compiled mode compiles four functions, each one static
graph: the reverse DDPM step (noise net, posterior mean and noise, called T times per step),
the trajectory log-probability, J_DM and the whole PPO objective (its backward compiled too);
the sampling and epoch loops, the LSTM scoring (one cuDNN call per step) and Adam (fused on
CUDA) stay eager. Each mode starts from the same weights; its log-probabilities (with the
initial weights, after timing) are compared with JAX's and eager's. The headline speed-up is
against the fastest PyTorch mode, the one against eager is shown too; the first step's time
includes compilation. PyTorch computes float32 matmuls at ``--torch-matmul-precision`` (TF32
on GPUs by default, as JAX does).

    python -m benchmarks.perf.gas_dro --size paper   # GPU
    python -m benchmarks.perf.gas_dro --size small   # CPU smoke run
"""

from __future__ import annotations

import os
import pathlib
import time

os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.45")  # leave room for PyTorch

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import _harness as harness
from benchmarks.perf import _torch_modes as modes
from benchmarks.setups.dro import MethodSettings, carbon_setup, evaluate, forecast_loss, train_method
from tailjax import dro
from tailjax.nn import LSTMForecaster, MLPNoiseNet, ddpm

SIZES = {
    "small": dict(T=50, last=15, batch=64, epochs=10, features=(256, 256, 256), hidden=32, window=24,
                  repeats=3, full_run=dict(stride=8, test_stride=48, num_steps=50, generator_steps=500,
                                           steps=20, inner_steps=2, epochs=3)),
    "paper": dict(T=500, last=15, batch=64, epochs=10, features=(256, 256, 256), hidden=32, window=24,
                  repeats=10, full_run=dict(stride=1, test_stride=1, num_steps=500, generator_steps=10_000,
                                            steps=300, inner_steps=10, epochs=10)),
}


# ----------------------------------------------------------------------------- PyTorch step
def torch_peer(torch, net, lstm, head, sched, nominal, cfg, mode="eager"):
    """One GAS-DRO inner step in PyTorch ``mode``, mirroring tailjax.dro.inner_max_kernel.

    Returns ``(step, log_prob)``: ``step(mu, gen)`` updates ``net`` in place and returns the
    new dual variable and the sampled losses; ``log_prob(states)`` scores ``batch`` stored
    trajectories (the last ``last + 1`` states each). A compiled mode compiles the reverse
    step (noise net, mean and noise), the log-probability, J_DM and the PPO objective, each
    as one static graph; the loops, the LSTM scoring and Adam stay eager.
    """
    T, last, n, d = cfg["T"], cfg["last"], cfg["batch"], cfg["window"] + 1
    betas, alphas, abar, sig = sched
    dev = nominal.device
    opt = torch.optim.Adam(net.parameters(), lr=1e-5, fused=True if dev.type == "cuda" else None)
    keep = modes.keeper(torch, mode)
    times = torch.arange(T, 0, -1, device=dev)[:, None].expand(T, n).contiguous()  # row T - t holds t
    ts = torch.arange(last, 0, -1, device=dev).repeat(n)  # (n * last,)

    def mean_fn(x, t, eps):
        coef = (betas[t - 1] / torch.sqrt(1 - abar[t - 1]))[:, None]
        return (x - coef * eps) / torch.sqrt(alphas[t - 1])[:, None]

    def reverse(x, t, z, s):  # one DDPM step from time t (a (n,) tensor), noise scale s, standard noise z
        return mean_fn(x, t, net(x, t)) + s * z

    def log_prob(states):
        xt = states[:, :-1].reshape(-1, d)
        xp = states[:, 1:].reshape(-1, d)
        mu_ = mean_fn(xt, ts, net(xt, ts))
        s = sig[ts - 1][:, None]
        lp = -0.5 * ((xp - mu_) / s) ** 2 - torch.log(s) - 0.5 * np.log(2 * np.pi)
        return lp.sum(-1).reshape(n, last).sum(-1)

    def dm_loss(t, noise):
        ab = abar[t - 1][:, None]
        xt = torch.sqrt(ab) * nominal + torch.sqrt(1 - ab) * noise
        return ((noise - net(xt, t)) ** 2).mean()

    def objective(states, adv, logp_old, mu, t, noise):
        rho = torch.exp(log_prob(states) - logp_old)
        surr = torch.minimum(rho * adv, torch.clamp(rho, 0.6, 1.4) * adv).mean()
        return -surr + mu * dm_loss(t, noise)

    reverse_c, log_prob_c, dm_loss_c, objective_c = (modes.wrap(torch, f, mode)
                                                     for f in (reverse, log_prob, dm_loss, objective))

    def draw_dm(gen):
        t = torch.randint(1, T + 1, (nominal.shape[0],), device=dev, generator=gen)
        return t, torch.randn(nominal.shape, device=dev, generator=gen)

    def step(mu, gen):
        modes.step_begin(torch, mode)
        with torch.no_grad():
            x = torch.randn(n, d, device=dev, generator=gen)
            states = []
            for t in range(T, 0, -1):
                if t == last:
                    states.append(x)
                x = keep(reverse_c(x, times[T - t], torch.randn(n, d, device=dev, generator=gen), sig[t - 1]))
                if t <= last:
                    states.append(x)
            states = torch.stack(states, 1)  # (n, last + 1, d)
            out, _ = lstm(x[:, :-1, None])
            losses = (head(out[:, -1])[:, 0] - x[:, -1]) ** 2
            adv = losses - losses.mean()
            logp_old = keep(log_prob_c(states))
        mu_t = torch.tensor(mu, dtype=states.dtype, device=dev)
        for _ in range(cfg["epochs"]):
            loss = objective_c(states, adv, logp_old, mu_t, *draw_dm(gen))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            j = dm_loss_c(*draw_dm(gen))
        return max(0.0, mu + 1.0 * (float(j) - 0.2)), losses

    def scored(states):
        modes.step_begin(torch, mode)
        with torch.no_grad():
            return keep(log_prob_c(states))

    return step, scored


def torch_modules(torch, theta, w, cfg, dev):
    """PyTorch copies of the JAX noise network and LSTM with the same weights."""
    nn = torch.nn
    p = theta["params"]
    L = len(cfg["features"])

    def lin(name, bias=True):
        k = np.asarray(p[name]["kernel"])
        m = nn.Linear(k.shape[0], k.shape[1], bias=bias)
        m.weight.data = torch.tensor(k.T.copy())
        if bias:
            m.bias.data = torch.tensor(np.asarray(p[name]["bias"]))
        return m

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.t1, self.t2 = lin("Dense_1"), lin("Dense_0")  # flax names the outer Dense first
            self.h = nn.ModuleList([lin(f"Dense_{2 + 2 * i}") for i in range(L)])
            self.e = nn.ModuleList([lin(f"Dense_{3 + 2 * i}", bias=False) for i in range(L)])
            self.out = lin(f"Dense_{2 + 2 * L}")
            self.register_buffer("freqs", torch.exp(-np.log(10_000.0) * torch.arange(16) / 16))

        def forward(self, x, t):
            a = t.float()[:, None] * self.freqs
            temb = self.t2(torch.nn.functional.silu(self.t1(torch.cat([a.sin(), a.cos()], -1))))
            h = torch.cat([x, temb], -1)
            for lh, le in zip(self.h, self.e):
                h = torch.nn.functional.silu(lh(h) + le(temb))
            return self.out(h)

    q = w["params"]
    cell = q["OptimizedLSTMCell_0"]
    H = cfg["hidden"]
    lstm = nn.LSTM(1, H, batch_first=True)
    cat = lambda names: np.concatenate([np.asarray(cell[n]["kernel"]) for n in names], 1).T.copy()
    lstm.weight_ih_l0.data = torch.tensor(cat(["ii", "if", "ig", "io"]))
    lstm.weight_hh_l0.data = torch.tensor(cat(["hi", "hf", "hg", "ho"]))
    lstm.bias_hh_l0.data = torch.tensor(np.concatenate([np.asarray(cell[n]["bias"]) for n in ["hi", "hf", "hg", "ho"]]))
    lstm.bias_ih_l0.data.zero_()
    head = nn.Linear(H, 1)
    head.weight.data = torch.tensor(np.asarray(q["Dense_0"]["kernel"]).T.copy())
    head.bias.data = torch.tensor(np.asarray(q["Dense_0"]["bias"]))
    return Net().to(dev), lstm.to(dev), head.to(dev)


def bench_step(cfg, nominal_np, torch_modes=modes.MODES, precision="high", log=print):
    """JAX's inner step, then the PyTorch peer in each of ``torch_modes``."""
    key = jax.random.key(0)
    d = cfg["window"] + 1
    sched = ddpm.make_schedule(cfg["T"], beta_end=min(0.02 * 1000 / cfg["T"], 0.5) if cfg["T"] < 1000 else 0.02)
    net = MLPNoiseNet(tuple(cfg["features"]))
    apply = lambda p, x, t, c: net.apply(p, x, t, c)  # noqa: E731
    theta = net.init(key, jnp.zeros(d), jnp.array(1))
    theta = jax.tree_util.tree_map(lambda a: a + 0.01 * jax.random.normal(jax.random.key(1), a.shape), theta)
    model = LSTMForecaster(cfg["hidden"])
    w = model.init(jax.random.key(2), jnp.zeros(cfg["window"]))
    # the on-policy step that the PyTorch mirror implements: reference theta_k, every step by theta,
    # J over all T steps (the paper's defaults differ: see tailjax.dro.ddpm_ambiguity_set)
    aset = dro.ddpm_ambiguity_set(apply, sched, (d,), cfg["last"], reconstruction_steps="all", stratified=False)
    kernel = dro.inner_max_kernel(aset, forecast_loss(model), optax.adam(1e-5), clip=0.4, budget=0.2, dual_lr=1.0,
                                  num_samples=cfg["batch"], epochs=cfg["epochs"], reference="current")
    nominal = jnp.asarray(nominal_np[: cfg["batch"]])
    state, batch = kernel.init(theta, 0.1), dro.InnerBatch(w, nominal)
    t0 = time.perf_counter()
    compiled = jax.jit(kernel.step).lower(state, key, batch).compile()
    compile_s = time.perf_counter() - t0
    timing = harness.time_call(compiled, state, key, batch, repeats=cfg["repeats"])
    jax_med = timing["seconds"]
    log(f"JAX inner step: median {jax_med * 1e3:.1f} ms (compile {compile_s:.1f} s)")
    out = {"jax_median_s": jax_med, "jax_times_s": timing["times"], "jax_compile_s": compile_s}
    try:
        import torch
    except ImportError:
        log("PyTorch not installed: the PyTorch peer is skipped")
        return {**out, "torch_median_s": None, "speedup": None, "speedup_vs_eager": None}

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    out.update(modes.setup(torch, precision), torch_device=dev, torch_modes=list(torch_modes))
    # parity: the same trajectories scored by both implementations, in every PyTorch mode
    n = cfg["batch"]
    _, traj = jax.jit(aset.sample, static_argnums=2)(jax.random.key(5), theta, n)
    lp_jax = np.asarray(aset.log_prob(theta, traj))
    r_jax = np.asarray(jax.vmap(forecast_loss(model), in_axes=(None, 0))(w, traj.states[:, -1]))
    sched_t = [torch.tensor(np.asarray(a), device=dev) for a in sched]
    nominal_t = torch.tensor(np.asarray(nominal), device=dev)
    st = torch.tensor(np.asarray(traj.states), device=dev)
    sync = modes.synchronizer(torch, dev)

    def bench(mode):
        tnet, lstm, head = torch_modules(torch, theta, w, cfg, dev)
        initial = [p.detach().clone() for p in tnet.parameters()]
        step, log_prob = torch_peer(torch, tnet, lstm, head, sched_t, nominal_t, cfg, mode)
        gen = torch.Generator(device=dev)
        gen.manual_seed(0)
        mu = {"v": 0.1}

        def run_torch():
            mu["v"], _ = step(mu["v"], gen)

        timing = harness.time_call(run_torch, repeats=cfg["repeats"], block=lambda _: sync())
        with torch.no_grad():  # parity with the initial weights, as JAX scores them
            for p, p0 in zip(tnet.parameters(), initial):
                p.copy_(p0)
            lp_t = log_prob(st).cpu().numpy()
            lstm_out, _ = lstm(st[:, -1, :-1, None])
            r_t = ((head(lstm_out[:, -1])[:, 0] - st[:, -1, -1]) ** 2).cpu().numpy()
        parity = {"log_prob_max_rel_diff": float(np.max(np.abs(lp_t - lp_jax) / np.abs(lp_jax))),
                  "reward_max_abs_diff": float(np.max(np.abs(r_t - r_jax))),
                  "reward_scale": float(np.max(np.abs(r_jax))),
                  "log_prob": lp_t}
        res = {"median_s": timing["seconds"], "times_s": timing["times"], "first_s": timing["compile_seconds"],
               "parity": parity}
        log(f"PyTorch {mode} inner step: median {res['median_s'] * 1e3:.1f} ms (first {res['first_s']:.1f} s), "
            f"log-prob rel diff {parity['log_prob_max_rel_diff']:.2e}, reward abs diff "
            f"{parity['reward_max_abs_diff']:.2e} (largest reward {parity['reward_scale']:.3g})")
        return res

    per_mode = modes.run_modes(torch, torch_modes, dev, bench, log=log)
    eager_lp = per_mode.get("eager", {}).get("parity", {}).get("log_prob")
    for mode, r in per_mode.items():
        if "parity" in r:
            lp = r["parity"].pop("log_prob")
            if eager_lp is not None:
                r["parity"]["log_prob_max_rel_diff_eager"] = float(np.max(np.abs(lp - eager_lp) / np.abs(eager_lp)))
    out["torch"] = per_mode
    best = modes.fastest(per_mode, "median_s", higher_is_better=False)
    out["torch_fastest"] = best
    out["torch_median_s"] = per_mode[best]["median_s"] if best else None
    out["speedup"] = out["torch_median_s"] / jax_med if best else None
    eager = per_mode.get("eager", {}).get("median_s")
    out["speedup_vs_eager"] = eager / jax_med if eager is not None else None
    if best:
        log(f"speed-up against the fastest PyTorch mode ({best}): {out['speedup']:.1f}x")
    return out


def full_run(cfg, data, log=print):
    """GAS-DRO end to end on the carbon task: nominal DDPM pre-training + Algorithm 1."""
    f = cfg["full_run"]
    t0 = time.perf_counter()
    setup = carbon_setup(jax.random.key(0), data, "today", stride=f["stride"], test_stride=f["test_stride"],
                         num_steps=f["num_steps"], generator_steps=f["generator_steps"], baselines=False)
    setup_s = time.perf_counter() - t0
    gas = dro.GasDroConfig(inner_steps=f["inner_steps"], epochs=f["epochs"], dual_lr=1.0, advantages="center",
                           budget=setup.budget)
    out = {}
    for name in ("ML", "GAS-DRO"):
        w, cost, _ = train_method(name, jax.random.key(1), setup.loss_fn, setup.params, setup.train,
                                  setup.resources, MethodSettings(steps=f["steps"], gas=gas))
        mse = evaluate(setup.loss_fn, w, setup.tests)
        out[name] = {"seconds": cost["seconds"], "average_mse": float(np.mean(list(mse.values()))),
                     "worst_mse": float(max(mse.values())), "mse": mse}
        log(f"full run {name}: {cost['seconds']:.1f} s, average MSE {out[name]['average_mse']:.5f}")
    out["setup_seconds"] = setup_s
    out["ddpm_pretrain_seconds"] = setup.info["ddpm_seconds"]
    out["gas_dro_total_seconds"] = setup_s + out["GAS-DRO"]["seconds"]
    out["config"] = f
    return out


def main(argv=None):
    p = harness.parser(__doc__, sizes=tuple(SIZES), out="results/perf_gas_dro")
    p.add_argument("--data", default=os.environ.get(
        "TAILJAX_DATA", str(pathlib.Path(__file__).resolve().parents[2] / ".." / "shared" / "data")))
    p.add_argument("--skip-full-run", action="store_true")
    p.add_argument("--full-steps", type=int, default=None, help="outer iterations of the full run")
    modes.add_arguments(p)
    args = p.parse_args(argv)
    cfg = dict(SIZES[args.size])
    if args.full_steps is not None:
        cfg["full_run"] = {**cfg["full_run"], "steps": args.full_steps}
    device = jax.devices()[0].device_kind
    print(f"device: {device}")
    rng = np.random.default_rng(0)
    nominal = rng.standard_normal((cfg["batch"], cfg["window"] + 1)).astype(np.float32)
    report = {"size": args.size, "config": {k: v for k, v in cfg.items() if k != "full_run"},
              "step": bench_step(cfg, nominal, args.torch_modes, args.torch_matmul_precision)}
    harness.write_json(args.out, "perf_gas_dro", report)
    if not args.skip_full_run and (pathlib.Path(args.data) / "carbon_intensity").is_dir():
        report["full_run"] = full_run(cfg, args.data)
        harness.write_json(args.out, "perf_gas_dro", report)

    s = report["step"]
    rows = _rows(s)
    ran = [r for r in rows if r["median ms"] is not None]
    fig, ax = harness.figure(figsize=(6, 3.5))
    ax.bar([r["implementation"] for r in ran], [r["median ms"] for r in ran])
    ax.set_ylabel("inner step, median ms")
    ax.tick_params(axis="x", labelsize=8)
    speed = (f"\n{s['speedup']:.1f}x faster than PyTorch {s['torch_fastest']}"
             if s["speedup"] is not None else "")
    ax.set_title(f"GAS-DRO inner step on {device}{speed}", fontsize=9)
    harness.save_figure(fig, args.out, "perf_gas_dro")
    columns = ["implementation", "median ms", "JAX speed-up", "compile s", "first step s", "log-prob rel diff",
               "vs eager", "reward abs diff", "graphs", "graph breaks", "status"]
    lines = [f"device {device}", harness.markdown_table(
        rows, columns, {"median ms": ".1f", "JAX speed-up": ".2f", "compile s": ".1f", "first step s": ".1f",
                        "log-prob rel diff": ".2e", "vs eager": ".2e", "reward abs diff": ".2e"})]
    if s["speedup"] is not None:
        lines.append(f"speed-up {s['speedup']:.1f}x against the fastest PyTorch mode ({s['torch_fastest']}), "
                     + (f"{s['speedup_vs_eager']:.1f}x against eager " if s["speedup_vs_eager"] else "")
                     + "(goal >= 5x)")
    if "full_run" in report:
        fr = report["full_run"]
        lines.append(f"full carbon run: DDPM pre-training {fr['ddpm_pretrain_seconds']:.1f} s, setup "
                     f"{fr['setup_seconds']:.1f} s, GAS-DRO training {fr['GAS-DRO']['seconds']:.1f} s, "
                     f"total {fr['gas_dro_total_seconds']:.1f} s (goal < 300 s; paper 1897 s); "
                     f"ML {fr['ML']['seconds']:.1f} s")
    print("\n".join(lines))
    return report


def _rows(s):
    """One table row for JAX and one per PyTorch mode (ran, skipped or failed)."""
    rows = [{"implementation": "JAX (tailjax)", "median ms": s["jax_median_s"] * 1e3,
             "compile s": s["jax_compile_s"], "status": "ran"}]
    for mode, r in s.get("torch", {}).items():
        parity = r.get("parity", {})
        median = r.get("median_s")
        rows.append({"implementation": f"PyTorch {mode}", "median ms": None if median is None else median * 1e3,
                     "JAX speed-up": None if median is None else median / s["jax_median_s"],
                     "first step s": r.get("first_s"), "log-prob rel diff": parity.get("log_prob_max_rel_diff"),
                     "vs eager": parity.get("log_prob_max_rel_diff_eager"),
                     "reward abs diff": parity.get("reward_max_abs_diff"), "graphs": r.get("graphs"),
                     "graph breaks": r.get("graph_breaks"), "status": r.get("skipped") or r.get("error") or "ran"})
    return rows


if __name__ == "__main__":
    main()

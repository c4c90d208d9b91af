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
def torch_inner_step(torch, net, lstm, head, opt, sched, mu, nominal, cfg, gen):
    """One GAS-DRO inner step in plain PyTorch (eager), mirroring tailjax.dro.inner_max_kernel."""
    T, last, n, d = cfg["T"], cfg["last"], cfg["batch"], cfg["window"] + 1
    betas, alphas, abar, sig = sched
    dev = nominal.device

    def eps_fn(x, t):
        return net(x, t)

    def mean_fn(x, t, eps):
        coef = (betas[t - 1] / torch.sqrt(1 - abar[t - 1]))[:, None]
        return (x - coef * eps) / torch.sqrt(alphas[t - 1])[:, None]

    with torch.no_grad():
        x = torch.randn(n, d, device=dev, generator=gen)
        states = []
        for t in range(T, 0, -1):
            if t == last:
                states.append(x)
            tt = torch.full((n,), t, device=dev, dtype=torch.long)
            x = mean_fn(x, tt, eps_fn(x, tt)) + sig[t - 1] * torch.randn(n, d, device=dev, generator=gen)
            if t <= last:
                states.append(x)
        states = torch.stack(states, 1)  # (n, last + 1, d)
        out, _ = lstm(x[:, :-1, None])
        losses = (head(out[:, -1])[:, 0] - x[:, -1]) ** 2
        adv = losses - losses.mean()

    ts = torch.arange(last, 0, -1, device=dev).repeat(n)  # (n * last,)

    def log_prob():
        xt = states[:, :-1].reshape(-1, d)
        xp = states[:, 1:].reshape(-1, d)
        mu_ = mean_fn(xt, ts, eps_fn(xt, ts))
        s = sig[ts - 1][:, None]
        lp = -0.5 * ((xp - mu_) / s) ** 2 - torch.log(s) - 0.5 * np.log(2 * np.pi)
        return lp.sum(-1).reshape(n, last).sum(-1)

    def dm_loss():
        m = nominal.shape[0]
        t = torch.randint(1, T + 1, (m,), device=dev, generator=gen)
        noise = torch.randn(nominal.shape, device=dev, generator=gen)
        ab = abar[t - 1][:, None]
        xt = torch.sqrt(ab) * nominal + torch.sqrt(1 - ab) * noise
        return ((noise - eps_fn(xt, t)) ** 2).mean()

    with torch.no_grad():
        logp_old = log_prob()
    for _ in range(cfg["epochs"]):
        rho = torch.exp(log_prob() - logp_old)
        surr = torch.minimum(rho * adv, torch.clamp(rho, 0.6, 1.4) * adv).mean()
        loss = -surr + mu * dm_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        j = dm_loss()
    return max(0.0, mu + 1.0 * (float(j) - 0.2)), losses


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


def bench_step(cfg, nominal_np, log=print):
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
        return {**out, "torch_median_s": None, "speedup": None}

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    tnet, lstm, head = torch_modules(torch, theta, w, cfg, dev)
    # parity: the same trajectory scored by both implementations
    _, traj = jax.jit(aset.sample, static_argnums=2)(jax.random.key(5), theta, 4)
    lp_jax = np.asarray(aset.log_prob(theta, traj))
    sched_t = [torch.tensor(np.asarray(a), device=dev) for a in sched]
    st = torch.tensor(np.asarray(traj.states), device=dev)
    with torch.no_grad():
        last = cfg["last"]
        ts = torch.arange(last, 0, -1, device=dev).repeat(4)
        xt, xp = st[:, :-1].reshape(-1, d), st[:, 1:].reshape(-1, d)
        b, a, ab, sg = sched_t
        eps = tnet(xt, ts)
        mu_ = (xt - (b[ts - 1] / torch.sqrt(1 - ab[ts - 1]))[:, None] * eps) / torch.sqrt(a[ts - 1])[:, None]
        s = sg[ts - 1][:, None]
        lp_t = (-0.5 * ((xp - mu_) / s) ** 2 - torch.log(s) - 0.5 * np.log(2 * np.pi)).sum(-1).reshape(4, last).sum(-1)
        win = st[:, -1]
        lstm_out, _ = lstm(win[:, :-1, None])
        r_t = ((head(lstm_out[:, -1])[:, 0] - win[:, -1]) ** 2).cpu().numpy()
    r_jax = np.asarray(jax.vmap(forecast_loss(model), in_axes=(None, 0))(w, traj.states[:, -1]))
    parity = {"log_prob_max_rel_diff": float(np.max(np.abs(lp_t.cpu().numpy() - lp_jax) / np.abs(lp_jax))),
              "reward_max_abs_diff": float(np.max(np.abs(r_t - r_jax)))}
    log(f"parity: {parity}")
    topt = torch.optim.Adam(tnet.parameters(), lr=1e-5)
    nominal_t = torch.tensor(np.asarray(nominal), device=dev)
    gen = torch.Generator(device=dev)
    gen.manual_seed(0)
    mu = {"v": 0.1}

    def run_torch():
        mu["v"], _ = torch_inner_step(torch, tnet, lstm, head, topt, sched_t, mu["v"], nominal_t, cfg, gen)

    sync = (lambda _: torch.cuda.synchronize()) if dev == "cuda" else (lambda _: None)
    torch_timing = harness.time_call(run_torch, repeats=cfg["repeats"], block=sync)
    torch_med = torch_timing["seconds"]
    log(f"PyTorch inner step: median {torch_med * 1e3:.1f} ms; speed-up {torch_med / jax_med:.1f}x")
    return {**out, "torch_median_s": torch_med, "torch_times_s": torch_timing["times"],
            "speedup": torch_med / jax_med, "torch_version": torch.__version__, "torch_device": dev,
            "parity": parity}


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
    args = p.parse_args(argv)
    cfg = dict(SIZES[args.size])
    if args.full_steps is not None:
        cfg["full_run"] = {**cfg["full_run"], "steps": args.full_steps}
    device = jax.devices()[0].device_kind
    print(f"device: {device}")
    rng = np.random.default_rng(0)
    nominal = rng.standard_normal((cfg["batch"], cfg["window"] + 1)).astype(np.float32)
    report = {"size": args.size, "config": {k: v for k, v in cfg.items() if k != "full_run"},
              "step": bench_step(cfg, nominal)}
    harness.write_json(args.out, "perf_gas_dro", report)
    if not args.skip_full_run and (pathlib.Path(args.data) / "carbon_intensity").is_dir():
        report["full_run"] = full_run(cfg, args.data)
        harness.write_json(args.out, "perf_gas_dro", report)

    s = report["step"]
    rows = [{"implementation": "JAX (tailjax)", "median ms": s["jax_median_s"] * 1e3,
             "compile s": s["jax_compile_s"]}]
    if s["torch_median_s"] is not None:
        rows.append({"implementation": "PyTorch eager", "median ms": s["torch_median_s"] * 1e3})
    fig, ax = harness.figure(figsize=(5, 3.5))
    ax.bar([r["implementation"] for r in rows], [r["median ms"] for r in rows])
    ax.set_ylabel("inner step, median ms")
    speed = f"\n{s['speedup']:.1f}x faster" if s["speedup"] is not None else ""
    ax.set_title(f"GAS-DRO inner step on {device}{speed}")
    harness.save_figure(fig, args.out, "perf_gas_dro")
    lines = [f"device {device}", harness.markdown_table(rows, ["implementation", "median ms", "compile s"],
                                                        {"median ms": ".1f", "compile s": ".1f"})]
    if s["speedup"] is not None:
        lines.append(f"speed-up {s['speedup']:.1f}x (goal >= 5x)")
    if "full_run" in report:
        fr = report["full_run"]
        lines.append(f"full carbon run: DDPM pre-training {fr['ddpm_pretrain_seconds']:.1f} s, setup "
                     f"{fr['setup_seconds']:.1f} s, GAS-DRO training {fr['GAS-DRO']['seconds']:.1f} s, "
                     f"total {fr['gas_dro_total_seconds']:.1f} s (goal < 300 s; paper 1897 s); "
                     f"ML {fr['ML']['seconds']:.1f} s")
    print("\n".join(lines))
    return report


if __name__ == "__main__":
    main()

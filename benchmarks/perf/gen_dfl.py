"""One Gen-DFL training epoch: tailjax (one jitted, vmapped step) against a per-instance
PyTorch loop that solves each CVaR-SAA decision with a CPU solver (cvxpylayers), in one run.

    python -m benchmarks.perf.gen_dfl --size small      # CPU: d = 10, K = 32, n = 64
    python -m benchmarks.perf.gen_dfl --size paper      # GPU: portfolio d = 50, K = 100, n = 320

Workload (both sides identical): fully-invested portfolio, n instances, batch 32, K samples
of the conditional flow per x (RealNVP, tanh-bounded log-scales, conditional affine, same
layer count and widths), the CVaR-SAA decision min_w CVaR[-c^T w + w^T Sigma w] at
tail_prob (the paper's alpha) on the samples, the regret's CVaR over Kq proxy samples against
a fixed w_q, loss regret_weight * regret + nll_weight * NLL (the paper's beta and gamma),
backward through the decision layer, one Adam step per batch (tailjax: :func:`tailjax.dfl.gen_dfl`).

The comparison (the structure of the Gen-DFL authors' PyTorch code): a Python loop over the
instances of a batch; for each, sample from the torch flow (on the GPU when there is one),
solve the decision with ``cvxpylayers`` (diffcp/SCS on the CPU) and backpropagate through
it. Timings: compile/warm-up separately, then the median of repeated epochs
(``block_until_ready``); the torch loop runs ``--torch-batches`` batches and scales to an
epoch (said in the output). The torch side needs ``torch`` and ``cvxpylayers`` (optional:
without them, or with ``--skip-torch``, only tailjax is timed).
"""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import _harness as harness
from benchmarks.setups.dfl import make_data
from tailjax.dfl import GenDFLConfig, Proxy, gen_dfl, init_flow
from tailjax.nn import ConditionalFlow

SIZES = {"small": dict(dim=10, K=32, n=64, layers=4, hidden=64, repeats=3, torch_batches=2),
         "paper": dict(dim=50, K=100, n=320, layers=4, hidden=64, repeats=5, torch_batches=3)}
TAIL_PROB, REGRET_WEIGHT, NLL_WEIGHT, BATCH = 0.1, 10.0, 1.0, 32  # the paper's alpha, beta, gamma


def jax_epoch(inst, x, c, cfg):
    flow = ConditionalFlow(c.shape[1], x.shape[1], num_layers=cfg["layers"], hidden_sizes=(cfg["hidden"],) * 2)
    params = init_flow(jax.random.key(0), flow, x, c)
    proxy = Proxy(flow, params)
    config = GenDFLConfig(num_samples=cfg["K"], proxy_samples=cfg["K"], tail_prob=TAIL_PROB,
                          regret_weight=REGRET_WEIGHT, nll_weight=NLL_WEIGHT)
    w_q = jnp.full(c.shape, 1.0 / c.shape[1], jnp.float32)
    kernel = gen_dfl(flow, inst.problem, proxy, config, optax.adam(1e-3))
    nb = x.shape[0] // BATCH
    xb, cb, wb = (jnp.asarray(a[: nb * BATCH]).reshape(nb, BATCH, -1) for a in (x, c, w_q))

    @jax.jit
    def epoch(state, key):
        def body(s, i):
            s, info = kernel.step(s, jax.random.fold_in(key, i), (xb[i], cb[i], wb[i]))
            return s, info.loss
        return jax.lax.scan(body, state, jnp.arange(nb))

    state = kernel.init(params)
    t0 = time.perf_counter()
    state, losses = jax.block_until_ready(epoch(state, jax.random.key(1)))
    first = time.perf_counter() - t0
    times = []
    for r in range(cfg["repeats"]):
        t0 = time.perf_counter()
        state, losses = jax.block_until_ready(epoch(state, jax.random.key(2 + r)))
        times.append(time.perf_counter() - t0)
    assert np.isfinite(np.asarray(losses)).all()
    return dict(compile_and_first_s=first, epoch_s=statistics.median(times), epoch_all_s=times,
                final_loss=float(losses[-1]))


def torch_epoch(inst, x, c, cfg):
    import cvxpy as cp
    import torch
    from cvxpylayers.torch import CvxpyLayer

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    d, p, K, layers, hidden = c.shape[1], x.shape[1], cfg["K"], cfg["layers"], cfg["hidden"]
    sigma = np.asarray(inst.problem.quadratic, np.float64)

    def mlp(i, o):
        last = torch.nn.Linear(hidden, o)
        torch.nn.init.zeros_(last.weight), torch.nn.init.zeros_(last.bias)
        return torch.nn.Sequential(torch.nn.Linear(i, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, hidden),
                                   torch.nn.ReLU(), last)

    class Flow(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.nets = torch.nn.ModuleList([mlp(d + p, 2 * d) for _ in range(layers)])
            self.ctx = mlp(p, 2 * d)
            self.loc = torch.nn.Parameter(torch.tensor(c.mean(0)))
            self.log_scale = torch.nn.Parameter(torch.tensor(np.log(c.std(0))))
            self.masks = [((torch.arange(d) + i) % 2 == 0).to(dev) for i in range(layers)]

        def forward(self, z, xx):  # z -> c
            for net, m in zip(self.nets, self.masks):
                sh, raw = net(torch.cat([z * m, xx], -1)).chunk(2, -1)
                z = torch.where(m, z, z * torch.exp(3 * torch.tanh(raw / 3)) + sh)
            sh, raw = self.ctx(xx).chunk(2, -1)
            z = z * torch.exp(3 * torch.tanh(raw / 3)) + sh
            return self.loc + torch.exp(self.log_scale) * z

        def log_prob(self, cc, xx):
            y = (cc - self.loc) * torch.exp(-self.log_scale)
            ld = -self.log_scale.sum().expand(cc.shape[0])
            sh, raw = self.ctx(xx).chunk(2, -1)
            ls = 3 * torch.tanh(raw / 3)
            y, ld = (y - sh) * torch.exp(-ls), ld - ls.sum(-1)
            for net, m in reversed(list(zip(self.nets, self.masks))):
                sh, raw = net(torch.cat([y * m, xx], -1)).chunk(2, -1)
                ls = 3 * torch.tanh(raw / 3)
                y = torch.where(m, y, (y - sh) * torch.exp(-ls))
                ld = ld - torch.where(m, torch.zeros_like(ls), ls).sum(-1)
            return -0.5 * (y**2).sum(-1) - 0.5 * d * np.log(2 * np.pi) + ld

    flow = Flow().to(dev)
    opt = torch.optim.Adam(flow.parameters(), lr=1e-3)
    C = cp.Parameter((K, d))
    w, u, s = cp.Variable(d), cp.Variable(), cp.Variable(K)
    obj = u + cp.sum(s) / (TAIL_PROB * K) + cp.quad_form(w, cp.psd_wrap(sigma))
    cons = [s >= -C @ w - u, s >= 0, w >= 0, w <= 1, cp.sum(w) == 1]
    layer = CvxpyLayer(cp.Problem(cp.Minimize(obj), cons), parameters=[C], variables=[w])
    sig_t = torch.tensor(sigma, dtype=torch.float32, device=dev)
    wq = torch.full((d,), 1.0 / d, device=dev)
    xs, cs = torch.tensor(x, device=dev), torch.tensor(c, device=dev)

    def cost(cc, ww):
        return -(cc @ ww) + ww @ sig_t @ ww

    def cvar(v):
        k = max(1, int(np.ceil(TAIL_PROB * v.shape[0])))
        return torch.topk(v, k).values.mean()

    times = []
    for b in range(cfg["torch_batches"]):
        t0 = time.perf_counter()
        regrets = []
        for i in range(b * BATCH, (b + 1) * BATCH):
            xi = xs[i].expand(K, p)
            ci = flow(torch.randn(K, d, device=dev), xi)
            (wi,) = layer(ci.double().cpu())
            wi = wi.float().to(dev)
            with torch.no_grad():
                cq = flow(torch.randn(K, d, device=dev), xi)  # proxy samples (frozen q)
            regrets.append(cvar(cost(cq, wi) - cost(cq, wq)))
        nll = -flow.log_prob(cs[b * BATCH:(b + 1) * BATCH], xs[b * BATCH:(b + 1) * BATCH]).mean()
        loss = REGRET_WEIGHT * torch.stack(regrets).mean() + NLL_WEIGHT * nll
        opt.zero_grad()
        loss.backward()
        opt.step()
        if dev == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    per_batch = statistics.median(times[1:] if len(times) > 1 else times)
    return dict(batches_timed=len(times), batch_s=times, epoch_s=per_batch * (x.shape[0] // BATCH),
                torch_device=dev, solver="cvxpylayers/diffcp (SCS), CPU", final_loss=loss.item())


def main(argv=None):
    parser = harness.parser(__doc__, sizes=tuple(SIZES), out="results/perf_gen_dfl")
    parser.add_argument("--torch-batches", type=int, default=None)
    parser.add_argument("--skip-torch", action="store_true", help="time tailjax only")
    args = parser.parse_args(argv)
    cfg = dict(SIZES[args.size])
    if args.torch_batches:
        cfg["torch_batches"] = args.torch_batches
    inst, x, c = make_data("portfolio", 4, 0, cfg["n"], cfg["dim"])
    res_jax = jax_epoch(inst, x, c, cfg)
    print(f"tailjax: compile+first epoch {res_jax['compile_and_first_s']:.2f} s, epoch {res_jax['epoch_s']:.4f} s",
          flush=True)
    payload = dict(size=args.size, config=cfg, tail_prob=TAIL_PROB, batch=BATCH, tailjax=res_jax, goal=20.0)
    rows = [dict(implementation="tailjax (jit + vmap)", seconds_per_epoch=res_jax["epoch_s"])]
    if not args.skip_torch:
        try:
            res_torch = torch_epoch(inst, x, c, cfg)
        except ImportError as err:  # torch or cvxpylayers not installed
            res_torch = dict(error=f"not run: {err}")
        payload["torch_loop"] = res_torch
        if "epoch_s" in res_torch:
            payload["speedup"] = res_torch["epoch_s"] / res_jax["epoch_s"]
            rows.append(dict(implementation=f"torch loop + cvxpylayers ({res_torch['torch_device']})",
                             seconds_per_epoch=res_torch["epoch_s"],
                             note=f"{res_torch['batches_timed']} of {cfg['n'] // BATCH} batches timed, scaled"))
        else:
            rows.append(dict(implementation="torch loop + cvxpylayers", note=res_torch["error"]))
    harness.write_json(args.out, "gen_dfl", payload)
    fig, ax = harness.figure(figsize=(4.5, 3))
    timed = [r for r in rows if "seconds_per_epoch" in r]
    ax.bar([r["implementation"].replace(" + ", "\n+ ") for r in timed], [r["seconds_per_epoch"] for r in timed],
           color=["C0", "C1"][: len(timed)])
    ax.set_yscale("log")
    ax.set_ylabel("seconds per epoch")
    speedup = f" ({payload['speedup']:.0f}x)" if "speedup" in payload else ""
    ax.set_title(f"Gen-DFL epoch, d={cfg['dim']}, K={cfg['K']}, n={cfg['n']}{speedup}")
    harness.save_figure(fig, args.out, "gen_dfl")
    print(harness.markdown_table(rows, ["implementation", "seconds_per_epoch", "note"], {"seconds_per_epoch": ".4f"}))
    if "speedup" in payload:
        print(f"speed-up: {payload['speedup']:.1f}x (goal >= 20x)")
    return payload


if __name__ == "__main__":
    main()

"""SPO+ training speed against PyEPO 2.2, and the CVaR decision layer's throughput.

Part 1 (issue 4): SPO+ with a linear predictor on PyEPO's 5x5 shortest path (n = 1000
training points, p = 5, deg = 4, noise half-width 0.5, batch 32, Adam 1e-2), side by side
in one process:

- ``tailjax``: the exact DP oracle under ``lax.scan``; one epoch is a single jitted
  ``lax.scan`` of :func:`tailjax.dfl.baseline_kernel` (``spo_plus_loss``) over the epoch's
  minibatch rows (drawn by :func:`tailjax.training.minibatches` before the timed epochs:
  a permutation of 1000 integers per epoch).
- ``pyepo-jax-mpax``: PyEPO's JAX frontend (``pyepo.func.jax.SPOPlus``) with its MPAX
  backend (``pyepo.model.mpax.shortestPathModel``, raPDHG), the loss and step jitted (the
  Adam step of :func:`tailjax.training.gradient_kernel`, so both sides differ only in the
  loss and its solver).
- ``pyepo-torch-ortools``: PyEPO's PyTorch ``SPOPlus`` with the OR-Tools backend, with one
  solver process and with ``processes`` equal to the machine's CPU cores
  (``pyepo-torch-ortools-pN``).

Reported: seconds per epoch (median over epochs after a warm-up epoch that includes
compilation) and the final normalised regret on 1000 test points (PyEPO's definition), and
the ratio of PyEPO's fastest backend's epoch time to ours.

Part 2: the CVaR SAA layer (``tailjax.layers.cvar_decision``, K = 100 samples, d = 50,
box + budget, tail_prob 0.1, reg 0.1, batch 320 at paper size): instances/s forward and
forward+backward, against jaxopt's ``BoxOSQP`` on the same QP (dense, vmapped), with the
relative objective gap to a tight float64 reference.

Part 3 (``--layer-scaling``): the layer's forward and forward+backward time against K (d = 50)
and against d (K = 100), same batch: ``layer_scaling`` in the JSON, log-log plot
``dfl_layer_scaling.png``.

``--size small`` runs on CPU in a few minutes (fewer epochs, a smaller layer batch).
"""

from __future__ import annotations

import os
import statistics
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import _harness as harness
from tailjax.dfl import DFLBatch, baseline_kernel, normalized_regret, spo_plus_loss
from tailjax.dfl.problems import shortest_path_gen_data, shortest_path_problem
from tailjax.layers import cvar_decision, grid_shortest_path, make_polytope
from tailjax.nn import LinearPredictor
from tailjax.training import gradient_kernel, minibatches

SIZES = {
    "small": dict(epochs=4, layer_batch=64, layer_repeats=3),
    "paper": dict(epochs=10, layer_batch=320, layer_repeats=10),
}
N_TRAIN, N_TEST, P, DEG, NOISE, BATCH, LR, SEED = 1000, 1000, 5, 4, 0.5, 32, 1e-2, 135


def _data():
    x, c = shortest_path_gen_data(N_TRAIN + N_TEST, P, (5, 5), DEG, NOISE, SEED)
    return x[:N_TRAIN], c[:N_TRAIN], x[N_TRAIN:], c[N_TRAIN:]


def run_tailjax(epochs, data):
    x_tr, c_tr, x_te, c_te = (jnp.asarray(a, jnp.float32) for a in data)
    problem = shortest_path_problem()
    oracle = grid_shortest_path
    w_tr = jax.jit(jax.vmap(oracle))(c_tr)
    module = LinearPredictor(40)
    params = module.init(jax.random.key(0), x_tr[:1])
    loss = partial(spo_plus_loss, apply_fn=module.apply, problem=problem, oracle=oracle)
    kernel = baseline_kernel(loss, optax.adam(LR))
    state = kernel.init(params, w_tr[:1])
    steps = N_TRAIN // BATCH
    epoch_rows = minibatches(jax.random.key(1), jnp.arange(N_TRAIN), BATCH, stack=steps)  # (steps, BATCH)
    rows = [epoch_rows(e) for e in range(epochs + 1)]

    @jax.jit
    def epoch(state, e, rows):
        def body(st, step):
            i, idx = step
            batch = DFLBatch(x_tr[idx], c_tr[idx], w_tr[idx])
            st, info = kernel.step(st, jax.random.fold_in(jax.random.key(2), i), batch)
            return st, info.loss

        return jax.lax.scan(body, state, (e * steps + jnp.arange(steps), rows))

    times = []
    for e in range(epochs + 1):
        t0 = time.perf_counter()
        state, losses = epoch(state, e, rows[e])
        jax.block_until_ready(losses)
        times.append(time.perf_counter() - t0)
    w_hat = jax.vmap(oracle)(module.apply(state.params, x_te))
    regret = float(normalized_regret(w_hat, c_te, problem, oracle))
    return dict(first_epoch_s=times[0], epoch_s=statistics.median(times[1:]), regret=regret)


def run_pyepo_jax(epochs, data):
    import pyepo
    from pyepo.func.jax import SPOPlus

    x_tr, c_tr, x_te, c_te = data
    optmodel = pyepo.model.mpax.shortestPathModel(grid=(5, 5))
    # true solutions via PyEPO's own dataset (not timed)
    ds = pyepo.data.dataset.optDataset(optmodel, x_tr, c_tr)
    sols = jnp.asarray(np.asarray(ds.sols), jnp.float32)
    objs = jnp.asarray(np.asarray(ds.objs), jnp.float32).reshape(-1, 1)
    spo = SPOPlus(optmodel, processes=1)
    module = LinearPredictor(40)
    xj, cj = jnp.asarray(x_tr, jnp.float32), jnp.asarray(c_tr, jnp.float32)
    kernel = gradient_kernel(lambda p, b, k: (spo(module.apply(p, b[0]), *b[1:]), None), optax.adam(LR))
    state = kernel.init(module.init(jax.random.key(0), xj[:1]))
    train_step = jax.jit(kernel.step)
    steps = N_TRAIN // BATCH
    rng = np.random.default_rng(0)
    times = []
    for _ in range(epochs + 1):
        perm = rng.permutation(N_TRAIN)
        t0 = time.perf_counter()
        for j in range(steps):
            idx = perm[j * BATCH : (j + 1) * BATCH]
            state, info = train_step(state, jax.random.key(j), (xj[idx], cj[idx], sols[idx], objs[idx]))
        jax.block_until_ready(info.loss)
        times.append(time.perf_counter() - t0)
    c_hat = np.asarray(module.apply(state.params, jnp.asarray(x_te, jnp.float32)))
    regret = _pyepo_regret(optmodel, c_hat, c_te)
    return dict(first_epoch_s=times[0], epoch_s=statistics.median(times[1:]), regret=regret)


def _pyepo_regret(optmodel, c_hat, c_true):
    from pyepo.metric import calRegret

    total, denom = 0.0, 0.0
    for ch, ct in zip(c_hat, c_true):
        optmodel.setObj(ct)
        _, z = optmodel.solve()
        total += calRegret(optmodel, ch, ct, float(z))
        denom += abs(float(z))
    return total / denom


def run_pyepo_torch(epochs, data, processes=1):
    import pyepo
    import torch
    from torch.utils.data import DataLoader

    x_tr, c_tr, x_te, c_te = data
    torch.manual_seed(0)
    optmodel = pyepo.model.ort.shortestPathModel(grid=(5, 5))
    ds = pyepo.data.dataset.optDataset(optmodel, x_tr, c_tr)
    loader = DataLoader(ds, batch_size=BATCH, shuffle=True, drop_last=True)
    model = torch.nn.Linear(P, 40)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    spo = pyepo.func.SPOPlus(optmodel, processes=processes)
    times = []
    for _ in range(epochs + 1):
        t0 = time.perf_counter()
        for xb, cb, wb, zb in loader:
            loss = spo(model(xb), cb, wb, zb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    with torch.no_grad():
        c_hat = model(torch.as_tensor(x_te, dtype=torch.float32)).numpy()
    regret = _pyepo_regret(optmodel, c_hat, c_te)
    return dict(first_epoch_s=times[0], epoch_s=statistics.median(times[1:]), regret=regret,
                processes=processes)


def _layer_setup(batch, dtype=jnp.float32, K=100, d=50):
    rng = np.random.default_rng(0)
    poly = make_polytope(np.zeros(d), np.ones(d), ineq_matrix=np.ones((1, d)), ineq_rhs=[1.0])
    poly = jax.tree_util.tree_map(lambda a: a.astype(dtype), poly)
    C = jnp.asarray(-rng.normal(0.05, 0.2, (batch, K, d)), dtype)
    return poly, C


def _time(fn, arg, repeats):
    """(compile + first call s, median s of ``repeats`` calls)."""
    timing = harness.time_call(fn, arg, repeats=repeats)
    return timing["compile_seconds"], timing["seconds"]


def _boxosqp_cvar(C, tail, reg, maxiter, tol):
    """The same CVaR QP in BoxOSQP form (dense), as a jaxopt user would write it."""
    from jaxopt import BoxOSQP

    K, d = C.shape
    n = d + 1 + K
    dtype = C.dtype
    Q = jnp.zeros((n, n), dtype).at[:d, :d].set(2 * reg * jnp.eye(d, dtype=dtype))
    q = jnp.concatenate([jnp.zeros(d, dtype), jnp.ones(1, dtype), jnp.full(K, 1 / (tail * K), dtype)])
    rows = [
        jnp.concatenate([C, -jnp.ones((K, 1), dtype), -jnp.eye(K, dtype=dtype)], 1),  # <= 0
        jnp.concatenate([jnp.zeros((K, d + 1), dtype), jnp.eye(K, dtype=dtype)], 1),  # s >= 0
        jnp.concatenate([jnp.eye(d, dtype=dtype), jnp.zeros((d, 1 + K), dtype)], 1),  # 0 <= w <= 1
        jnp.concatenate([jnp.ones((1, d), dtype), jnp.zeros((1, 1 + K), dtype)], 1),  # sum w <= 1
    ]
    A = jnp.concatenate(rows, 0)
    inf = jnp.full(K, jnp.inf, dtype)
    lo = jnp.concatenate([-inf, jnp.zeros(K, dtype), jnp.zeros(d, dtype), -jnp.full(1, jnp.inf, dtype)])
    hi = jnp.concatenate([jnp.zeros(K, dtype), inf, jnp.ones(d, dtype), jnp.ones(1, dtype)])
    sol = BoxOSQP(maxiter=maxiter, tol=tol, jit=True).run(params_obj=(Q, q), params_eq=A, params_ineq=(lo, hi))
    x = sol.params.primal[0]
    return x[:d], 0.5 * x @ Q @ x + q @ x


def run_layer(batch, repeats):
    tail, reg = 0.1, 0.1
    poly, C = _layer_setup(batch)
    fwd = jax.jit(jax.vmap(lambda c: cvar_decision(c, poly, tail, reg=reg, return_info=True)))
    bwd = jax.jit(jax.grad(lambda C: jnp.sum(jax.vmap(lambda c: cvar_decision(c, poly, tail, reg=reg))(C)[:, 0])))
    c_f, t_f = _time(lambda a: fwd(a)[0], C, repeats)
    c_b, t_b = _time(bwd, C, repeats)
    w, info = fwd(C)
    osqp = jax.jit(jax.vmap(lambda c: _boxosqp_cvar(c, tail, reg, 4000, 1e-4)))
    c_o, t_o = _time(lambda a: osqp(a)[0], C, repeats)
    _, obj_osqp = osqp(C)
    with jax.enable_x64(True):
        poly64, C64 = _layer_setup(min(batch, 16), jnp.float64)
        ref = jax.vmap(lambda c: cvar_decision(c, poly64, tail, reg=reg, iterations=100, return_info=True)[1].objective)(C64)
    n = ref.shape[0]
    gap = lambda obj: float(jnp.max(jnp.abs(np.asarray(obj[:n], np.float64) - ref) / jnp.abs(ref)))  # noqa: E731
    return dict(
        K=100, d=50, batch=batch, tail_prob=tail, reg=reg,
        tailjax=dict(compile_fwd_s=c_f, fwd_s=t_f, fwd_inst_per_s=batch / t_f, compile_bwd_s=c_b,
                     fwd_bwd_s=t_b, fwd_bwd_inst_per_s=batch / t_b, max_rel_gap=gap(info.objective),
                     converged=float(jnp.mean(info.converged)), max_iterations=int(jnp.max(info.iterations))),
        jaxopt_boxosqp=dict(compile_fwd_s=c_o, fwd_s=t_o, fwd_inst_per_s=batch / t_o, max_rel_gap=gap(obj_osqp),
                            maxiter=4000, tol=1e-4),
    )


def run_layer_scaling(batch, repeats, Ks=(25, 50, 100, 200, 400), ds=(10, 25, 50, 100, 200)):
    """Forward and forward+backward seconds of the batched layer against K (d = 50) and d (K = 100)."""
    tail, reg = 0.1, 0.1
    rows = []
    for K, d in [(K, 50) for K in Ks] + [(100, d) for d in ds if d != 50]:
        poly, C = _layer_setup(batch, K=K, d=d)
        fwd = jax.jit(jax.vmap(lambda c: cvar_decision(c, poly, tail, reg=reg, return_info=True)))
        bwd = jax.jit(jax.grad(lambda C: jnp.sum(jax.vmap(lambda c: cvar_decision(c, poly, tail, reg=reg))(C)[:, 0])))
        _, t_f = _time(lambda a: fwd(a)[0], C, repeats)
        _, t_b = _time(bwd, C, repeats)
        info = fwd(C)[1]
        rows.append(dict(K=K, d=d, batch=batch, fwd_s=t_f, fwd_bwd_s=t_b,
                         converged=float(jnp.mean(info.converged)), max_iterations=int(jnp.max(info.iterations))))
        print("layer scaling", rows[-1], flush=True)
    return rows


def _plot_layer_scaling(rows, out):
    fig, axes = harness.figure(1, 2, figsize=(10, 3.5))
    for ax, (var, fixed) in zip(axes, [("K", ("d", 50)), ("d", ("K", 100))]):
        sel = sorted((r for r in rows if r[fixed[0]] == fixed[1]), key=lambda r: r[var])
        for key, label in (("fwd_s", "forward"), ("fwd_bwd_s", "forward + backward")):
            ax.loglog([r[var] for r in sel], [r[key] for r in sel], "o-", label=label)
        ax.set_xlabel(var)
        ax.set_ylabel(f"seconds per batch of {sel[0]['batch']}")
        ax.set_title(f"CVaR layer, {fixed[0]} = {fixed[1]}")
        ax.legend(fontsize=8)
    harness.save_figure(fig, out, "dfl_layer_scaling")


def _plot(result, out):
    fig, axes = harness.figure(1, 2, figsize=(10, 3.5))
    runs = result["spo_plus"]
    names = [k for k in runs if "epoch_s" in runs[k]]
    axes[0].bar(names, [runs[k]["epoch_s"] for k in names], color=[f"C{i}" for i in range(len(names))])
    axes[0].tick_params(axis="x", labelsize=7)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("seconds / epoch")
    axes[0].set_title("SPO+ on 5x5 shortest path (n=1000, batch 32)")
    lay = result["layer"]
    axes[1].bar(["tailjax IPM", "jaxopt BoxOSQP"],
                [lay["tailjax"]["fwd_inst_per_s"], lay["jaxopt_boxosqp"]["fwd_inst_per_s"]], color=["C0", "C3"])
    axes[1].set_yscale("log")
    axes[1].set_ylabel("instances / s (forward)")
    axes[1].set_title(f"CVaR layer K=100 d=50 batch {lay['batch']}")
    harness.save_figure(fig, out, "dfl_training")


def main(argv=None):
    parser = harness.parser(__doc__, sizes=tuple(SIZES), out="results/dfl_training")
    parser.add_argument("--skip", nargs="*", default=[],
                        help="runs to skip: tailjax pyepo-jax-mpax pyepo-torch-ortools layer")
    parser.add_argument("--layer-scaling", action="store_true", help="also time the layer against K and d")
    args = parser.parse_args(argv)
    cfg = SIZES[args.size]
    data = _data()
    result = dict(size=args.size,
                  setup=dict(n_train=N_TRAIN, n_test=N_TEST, p=P, deg=DEG, noise_width=NOISE, batch=BATCH,
                             lr=LR, epochs=cfg["epochs"]),
                  spo_plus={})
    cores = os.cpu_count() or 1
    runners = {"tailjax": run_tailjax, "pyepo-jax-mpax": run_pyepo_jax, "pyepo-torch-ortools": run_pyepo_torch,
               f"pyepo-torch-ortools-p{cores}": partial(run_pyepo_torch, processes=cores)}
    for name, fn in runners.items():
        if name in args.skip or (name.startswith("pyepo-torch-ortools") and "pyepo-torch-ortools" in args.skip):
            continue
        try:
            result["spo_plus"][name] = fn(cfg["epochs"], data)
        except ImportError as err:  # PyEPO or a backend not installed
            result["spo_plus"][name] = dict(error=f"not run: {err}")
        print(name, result["spo_plus"][name], flush=True)
    runs = result["spo_plus"]
    pyepo_times = [runs[k]["epoch_s"] for k in runs if k != "tailjax" and "epoch_s" in runs[k]]
    if "epoch_s" in runs.get("tailjax", {}) and pyepo_times:
        result["speedup_vs_fastest_pyepo"] = min(pyepo_times) / runs["tailjax"]["epoch_s"]
    if "layer" not in args.skip:
        result["layer"] = run_layer(cfg["layer_batch"], cfg["layer_repeats"])
        print("layer", result["layer"], flush=True)
    if args.layer_scaling:
        result["layer_scaling"] = run_layer_scaling(cfg["layer_batch"], cfg["layer_repeats"])
        _plot_layer_scaling(result["layer_scaling"], args.out)
    harness.write_json(args.out, "dfl_training", result)
    if "layer" in result and runs:
        _plot(result, args.out)
    rows = [dict(run=k, **({"s/epoch": v["epoch_s"], "1st epoch s": v["first_epoch_s"], "regret": v["regret"]}
                           if "epoch_s" in v else {"note": v["error"]})) for k, v in runs.items()]
    print(harness.markdown_table(rows, ["run", "s/epoch", "1st epoch s", "regret", "note"],
                                 {"s/epoch": ".4f", "1st epoch s": ".3f", "regret": ".4f"}))
    if "speedup_vs_fastest_pyepo" in result:
        print(f"speed-up vs fastest PyEPO backend: {result['speedup_vs_fastest_pyepo']:.1f}x")
    if "layer" in result:
        lt, lo = result["layer"]["tailjax"], result["layer"]["jaxopt_boxosqp"]
        print(f"CVaR layer K=100 d=50 batch {result['layer']['batch']}: tailjax fwd {lt['fwd_inst_per_s']:.0f}/s "
              f"fwd+bwd {lt['fwd_bwd_inst_per_s']:.0f}/s gap {lt['max_rel_gap']:.1e}; "
              f"BoxOSQP fwd {lo['fwd_inst_per_s']:.0f}/s gap {lo['max_rel_gap']:.1e}")
    return result


if __name__ == "__main__":
    main()

"""Gen-DFL reproductions: Table 1, Figures 3-6, energy on ICON (proxy-q), importance-sampled GTO.

    python -m benchmarks.seeds.gen_dfl --size small            # CPU, minutes (reduced grid)
    python -m benchmarks.seeds.gen_dfl --size paper --only table1 --seeds 10 --protocol paper-text
    python -m benchmarks.seeds.gen_dfl --size paper --only table1 --seeds 10 --protocol paper-code

The set-ups, protocols (``--protocol paper-text``: eq. (9) as written, exact where p(c|x) is
Gaussian, else fresh evaluation draws; ``--protocol paper-code``: the authors' code's absolute
CVaR gap under a flow fitted on every row), methods, reference rows, model selection and the
stated deviations are those of :mod:`benchmarks.setups.dfl.gen_dfl`: every number is a
normalised CVaR regret in % of |E f(c, w*)|. Experiments:
``table1`` (every problem and degree), the portfolio sweeps ``sigma``, ``dim``,
``train_size``, ``regret_weight`` (the paper's beta, scored at every evaluation level),
``tail_prob`` (the training alpha, scored at several evaluation levels: Fig. 5), ``samples``
(Fig. 6: K at training and at decision time together, ``K = K_eval``), ``decision_samples``
(Fig. 6 at decision time alone: ``K_eval`` swept, training ``K`` fixed), ``energy`` (ICON
prices; the true p(c|x) is unknown and a frozen evaluation flow fitted on every row with its
own key plays its part, so no method is scored under its own training proxy) and ``is_gto``
(importance-sampled generate-then-optimize against K, per dimension). ``--resume`` keeps the
configurations already in ``OUT/gen_dfl.json`` (a checkpoint of the same run), and a Table 1
cell or a sweep's configuration cut short goes on from its tuned baselines' training
checkpoints in ``OUT/partial/`` (a baseline's ``seconds`` then count this process's part only).
"""

from __future__ import annotations

import ast
import json
import os
import pathlib
import shutil
import time

import jax
import numpy as np

from benchmarks import _harness as harness
from benchmarks.setups.dfl import (
    EXPERIMENTS,
    LP_REG,
    PAPER_TABLE1,
    PROTOCOLS,
    SIZES,
    decide_gen_dfl,
    evaluate,
    make_data,
    make_flow,
    plot,
    plot_curves,
    summarise,
    table,
    table1_report,
)
from benchmarks.setups.dfl.gen_dfl import FORMS
from benchmarks.setups.dfl.sweeps import write_sweep_report
from tailjax.dfl import cvar_regret, fit_proxy, regret_reference
from tailjax.dfl.problems import icon_instance

_SWEEPS = {"sigma": ("sigma", "sigmas"), "dim": ("dim", "dims"), "train_size": ("n_train", "train_sizes"),
           "regret_weight": ("regret_weight", "regret_weights"), "samples": ("K", "Ks"),
           "decision_samples": ("K_eval", "Ks")}


_RESULT_FIELDS = ("experiment", "method", "tail_prob_eval", "metric", "regret", "protocol")


def cell_key(experiment, meta):
    """What identifies one configuration's evaluation: the experiment and its settings."""
    return (experiment,) + tuple(sorted((k, v) for k, v in meta.items() if k not in _RESULT_FIELDS))


# settings that only choose which cells run (each cell's key holds its value): a resumed run
# may add degrees or sweep values
_CELL_LISTS = ("degs", *sorted({values for _, values in _SWEEPS.values()}))


def _identity(run):
    return {**run, "config": {k: v for k, v in (run["config"] or {}).items() if k not in _CELL_LISTS}}


def load_checkpoint(path, run):
    """Records, cells and wall seconds per experiment of ``path`` (an earlier ``gen_dfl.json``)
    when it belongs to ``run`` (same size, protocol and settings but the lists of degrees and
    sweep values); an error that names the difference otherwise."""
    if not path.exists():
        return [], [], {}
    state = json.loads(path.read_text())
    mine = harness.as_written(run)
    theirs = harness.as_written({k: state.get(k) for k in mine})
    if _identity(theirs) != _identity(mine):
        diff = [k for k in ("size", "protocol") if theirs[k] != mine[k]]
        cfg = theirs["config"] or {}
        diff += sorted(k for k in set(cfg) | set(mine["config"])
                       if k not in _CELL_LISTS and cfg.get(k) != mine["config"].get(k))
        raise SystemExit(f"--resume: {path} belongs to another run (differs in {', '.join(diff)}); "
                         "use another --out or delete it")
    return state["records"], state.get("cells", []), state.get("timings_s", {})


def _cell_checkpoints(args, cfg, experiment, **meta):
    """(folder, run) of one cell's baseline training checkpoints: ``OUT/partial/<cell>``
    (emptied first unless ``--resume``; removed once the cell is in ``gen_dfl.json``) and the
    run and cell they belong to."""
    folder = pathlib.Path(args.out) / "partial" / "_".join([experiment, *(f"{k}{v}" for k, v in meta.items())])
    if not getattr(args, "resume", False):
        shutil.rmtree(folder, ignore_errors=True)
    run = _identity(dict(size=args.size, protocol=cfg["protocol"], config=cfg))
    return folder, harness.plain(dict(run, cell=dict(experiment=experiment, **meta)))


def _remove_checkpoints(folder):
    """Remove a finished cell's checkpoint folder, and ``partial/`` once it is empty."""
    shutil.rmtree(folder, ignore_errors=True)
    if folder.parent.is_dir() and not any(folder.parent.iterdir()):
        folder.parent.rmdir()


def run_experiment(name, cfg, args, log=print, sink=None, infos=None, done=frozenset()):
    """Records of one experiment; ``sink(records)`` is called after every configuration, and
    ``infos`` (a list) receives each configuration's evaluation kind and baseline tuning.
    Configurations whose :func:`cell_key` is in ``done`` are skipped."""
    recs = []
    infos = [] if infos is None else infos
    protocol = cfg["protocol"]

    def fresh(**meta):
        if cell_key(name, meta) in done:
            log(f"  kept from the checkpoint: {name} {meta}")
            return False
        return True

    def add(out, info=None, **meta):
        for method, by_level in out.items():
            for (a, form), v in by_level.items():
                recs.append(dict(experiment=name, method=method, tail_prob_eval=a, metric=form, regret=v,
                                 protocol=protocol, **meta))
        if info is not None:
            infos.append(dict(experiment=name, **meta, **info))
        if sink is not None:
            sink(recs)

    seeds = harness.seeds(args)
    n, nte, dim = cfg["n_train"], cfg["n_test"], cfg["dim"]
    if name == "table1":
        for s in seeds:  # seeds outermost: a run cut short still covers every cell
            for prob in (args.problems or cfg["problems"]):
                for deg in cfg["degs"]:
                    if not fresh(problem=prob, deg=deg, seed=s):
                        continue
                    log(f"  table1 {prob} deg={deg} seed={s}")
                    inst, x, c = make_data(prob, deg, s, n + nte, dim, protocol=protocol, budget=cfg.get("budget"))
                    info = {}
                    folder, run = _cell_checkpoints(args, cfg, name, problem=prob, deg=deg, seed=s)
                    out = evaluate(cfg, inst, x, c, n, s, methods=cfg["methods"], model=inst.model, log=log,
                                   problem_name=prob, info=info, checkpoint_dir=folder, run=run)[0]
                    add(out, info, problem=prob, deg=deg, seed=s)
                    _remove_checkpoints(folder)
        return recs
    if name in _SWEEPS:
        field, values = _SWEEPS[name]
        methods = (("gen_dfl", "nll_flow", "mse", "spo+") if name in ("sigma", "dim", "train_size")
                   else ("gen_dfl", "nll_flow"))
        for v in cfg[values]:
            for s in seeds:
                if not fresh(problem="portfolio", deg=4, seed=s, **{field: v}):
                    continue
                log(f"  {name}={v} seed={s}")
                ntr = v if field == "n_train" else n
                inst, x, c = make_data("portfolio", 4, s, ntr + nte, v if field == "dim" else dim,
                                       sigma=v if field == "sigma" else 20.0, protocol=protocol, budget=cfg.get("budget"))
                kw = {"K": dict(K=int(v), K_eval=int(v)), "K_eval": dict(K_eval=int(v)),
                      "regret_weight": dict(regret_weight=float(v), eval_tail_probs=cfg["eval_tail_probs"]),
                      }.get(field, {})
                folder, run = _cell_checkpoints(args, cfg, name, seed=s, **{field: v})
                add(evaluate(cfg, inst, x, c, ntr, s, methods=methods, model=inst.model, log=log,
                             checkpoint_dir=folder, run=run, **kw)[0],
                    problem="portfolio", deg=4, seed=s, **{field: v})
                _remove_checkpoints(folder)
        return recs
    if name == "tail_prob":
        for a_train in cfg["tail_probs"]:
            for s in seeds:
                if not fresh(problem="portfolio", deg=4, seed=s, tail_prob_train=a_train):
                    continue
                log(f"  tail_prob_train={a_train} seed={s}")
                inst, x, c = make_data("portfolio", 4, s, n + nte, dim, protocol=protocol, budget=cfg.get("budget"))
                out = evaluate(cfg, inst, x, c, n, s, methods=("gen_dfl",), model=inst.model,
                               eval_tail_probs=cfg["eval_tail_probs"], tail_prob_train=a_train, log=log)[0]
                add(out, problem="portfolio", deg=4, seed=s, tail_prob_train=a_train)
        return recs
    if name == "is_gto":  # regret against K with and without importance sampling, per dimension
        level = 0.05
        for d in cfg.get("is_dims", (dim,)):
            for s in seeds:
                Ks = [K for K in cfg["is_Ks"] if fresh(problem="portfolio", deg=4, seed=s, dim=d, K=K)]
                if not Ks:
                    continue
                log(f"  is_gto dim={d} seed={s}")
                inst, x, c = make_data("portfolio", 4, s, n + nte, d, budget="equality")
                _, flow, proxy, _ = evaluate(cfg, inst, x, c, n, s, methods=("nll_flow",), model=inst.model,
                                             log=log)
                ref = regret_reference(jax.random.key(100 + s), inst.problem, inst.model, x[n:], level,
                                       num_samples=cfg["ref_samples"], eval_samples=cfg.get("eval_samples"))
                for K in Ks:
                    for imp in (False, True):
                        # mean over decision keys: one draw of K samples per row is itself noisy
                        keys = [jax.random.key(7 + s + 1000 * r) for r in range(cfg.get("is_repeats", 1))]
                        ws = [decide_gen_dfl(k, flow, proxy.params, inst.problem, x[n:], tail_prob=level,
                                             num_samples=K, importance=imp) for k in keys]
                        v = float(np.mean([cvar_regret(w, ref, inst.problem) for w in ws]))
                        log(f"  is_gto dim={d} K={K} importance={imp}: {v:.2f}")
                        recs.append(dict(experiment=name, method="is" if imp else "plain", tail_prob_eval=level,
                                         regret=v, K=K, dim=d, seed=s, problem="portfolio", deg=4))
                    if sink is not None:  # both records of a K at once: a checkpoint holds whole cells
                        sink(recs)
        return recs
    if name == "energy":
        path = pathlib.Path(args.data) / "icon_energy"
        if not path.is_dir():
            log(f"  energy: ICON data not found at {path}; skipped")
            return recs
        inst, n_tr = icon_instance(path, reg=LP_REG)
        x, c = np.asarray(inst.features, np.float32), np.asarray(inst.costs, np.float32)
        tr = np.arange(n_tr)[: cfg["icon_train"]] if cfg["icon_train"] else np.arange(n_tr)
        te = np.arange(n_tr, x.shape[0])[: cfg["icon_test"]] if cfg["icon_test"] else np.arange(n_tr, x.shape[0])
        idx = np.concatenate([tr, te])
        for s in seeds:
            if not fresh(problem="icon_energy", seed=s):
                continue
            log(f"  energy (ICON, proxy-q evaluation) seed={s}")
            # evaluation proxy: its own flow, fitted on every row (test rows included, as in the
            # authors' code) with another key, so no method is scored under its own training proxy
            q_eval = fit_proxy(jax.random.key(10_000 + s), x[idx], c[idx], num_steps=cfg["proxy_steps"],
                               batch_size=64, flow=make_flow(cfg, "icon_energy", c, x), learning_rate=cfg["proxy_lr"])
            out = evaluate(cfg, inst, x[idx], c[idx], len(tr), s, methods=cfg["methods"], model=q_eval,
                           model_is_truth=False, log=log)[0]
            add(out, problem="icon_energy", seed=s)
        return recs
    raise ValueError(f"unknown experiment {name!r}")


def main(argv=None):
    parser = harness.parser(__doc__, sizes=("small", "paper"), out="results/seeds_gen_dfl", seeds=None,
                            compile_cache=True)
    parser.add_argument("--only", nargs="*", choices=EXPERIMENTS)
    parser.add_argument("--problems", nargs="*", default=None)
    parser.add_argument("--protocol", choices=PROTOCOLS, default="paper-text")
    parser.add_argument("--degs", nargs="*", type=int, default=None)
    parser.add_argument("--methods", nargs="*", default=None)
    parser.add_argument("--set", nargs="*", default=(), metavar="KEY=VALUE",
                        help="override size settings, e.g. --set steps=300 n_test=50 (Python literals)")
    shared = pathlib.Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
    default_data = os.environ.get("TAILJAX_DATA", str(shared))
    parser.add_argument("--data", default=default_data)
    parser.add_argument("--resume", action="store_true", help="keep the configurations of OUT/gen_dfl.json "
                        "(written after every one) when it belongs to the same run")
    args = parser.parse_args(argv)
    harness.use_compile_cache(args)
    cfg = dict(SIZES[args.size], protocol=args.protocol)
    if args.seeds is None:
        args.seeds = cfg["seeds"]
    if args.degs:
        cfg["degs"] = tuple(args.degs)
    if args.methods:
        cfg["methods"] = tuple(args.methods)
    for item in args.set:
        k, _, v = item.partition("=")
        if k not in cfg:
            raise SystemExit(f"--set: unknown setting {k!r}; one of {sorted(cfg)}")
        cfg[k] = ast.literal_eval(v)
    recs, infos, earlier = load_checkpoint(pathlib.Path(args.out) / "gen_dfl.json", dict(
        size=args.size, protocol=args.protocol, config=cfg)) if args.resume else ([], [], {})
    finished = frozenset(cell_key(r["experiment"], r) for r in recs)
    if finished:
        print(f"[resume] {len(finished)} configurations kept from {args.out}", flush=True)
    timings = dict(earlier)  # wall seconds per experiment, summed over the processes of a resumed run
    for name in args.only or EXPERIMENTS:
        print(f"[{name}]", flush=True)
        t0 = time.perf_counter()

        def write(partial, done=recs):
            harness.write_json(args.out, "gen_dfl", dict(
                size=args.size, protocol=args.protocol, config=cfg, timings_s=timings, records=done + partial,
                cells=infos,
                summary=summarise(done + partial),
                paper_table1={f"{k[0]}/{k[1]}": v for k, v in PAPER_TABLE1.items()}))

        recs += run_experiment(name, cfg, args, log=lambda s: print(s, flush=True), sink=write, infos=infos,
                               done=finished)
        timings[name] = earlier.get(name, 0.0) + time.perf_counter() - t0
        write([])
    rows = summarise(recs)
    plot(rows, args.out, "gen_dfl", metric=FORMS[args.protocol][0])
    print(table(rows))
    if any(r["experiment"] == "table1" for r in recs):
        report = "\n\n".join(table1_report(recs, m) for m in FORMS[args.protocol])
        (pathlib.Path(args.out) / "table1.md").write_text(report + "\n")
        print(report)
    write_sweep_report(recs, args.out)
    if infos:
        plot_curves(infos, args.out)
    print(f"results in {pathlib.Path(args.out).resolve()}")


if __name__ == "__main__":
    main()

"""Reports of the Gen-DFL benchmarks: records summarised over seeds, the printed table, the figure,
and Table 1 of the paper from per-seed records (mean ± sd per cell, per-seed orderings).

A record is a dict with ``experiment``, ``method``, ``tail_prob_eval``, ``metric``, ``regret``,
``seed`` and the settings of its configuration (``problem``, ``deg``, ``sigma``, ``dim``,
``n_train``, ``regret_weight``, ``K``, ``K_eval``, ``tail_prob_train``). Records written before
the names ``tail_prob``/``regret_weight`` (``alpha_eval``, ``alpha_train``, ``beta``) are renamed
on read (:func:`renamed`).

Each Table 1 ordering "A < B" counts the seeds on which method A's regret is below B's on the
same data, with a two-sided sign test (ties dropped); the "best baseline" of a seed is the
lowest regret among the baselines run on it.
"""

from __future__ import annotations

import math

import numpy as np

from benchmarks import _harness as harness
from benchmarks.setups.dfl.gen_dfl import PAPER_TABLE1, TAIL_PROB

__all__ = ["EXPERIMENTS", "renamed", "summarise", "table", "plot", "plot_curves", "table1_cells",
           "best_baseline", "ordering", "verdict", "table1_report", "mean_sd_cell"]

EXPERIMENTS = ("table1", "sigma", "dim", "train_size", "regret_weight", "tail_prob", "samples",
               "decision_samples", "energy", "is_gto")
_OLD_NAMES = {"alpha_eval": "tail_prob_eval", "alpha_train": "tail_prob_train", "beta": "regret_weight"}
_OLD_EXPERIMENTS = {"alpha": "tail_prob", "beta": "regret_weight"}
TABLE1_METHODS = (("gen_dfl", "Gen-DFL"), ("nll_flow", "NLL flow"), ("spo+", "SPO+"), ("spo+_log", "SPO+ (log link)"),
                  ("mse", "PTO (MSE)"),
                  ("mse_log", "PTO (MSE on log costs)"),
                  ("nce", "NCE"), ("map", "MAP"), ("pairwise", "pairwise"), ("listwise", "listwise"),
                  ("dfl", "DFL"), ("dfl+", "DFL+"),
                  *((f"{m}_log", f"{label} (log link)") for m, label in (
                      ("nce", "NCE"), ("map", "MAP"), ("pairwise", "pairwise"), ("listwise", "listwise"),
                      ("dfl", "DFL"), ("dfl+", "DFL+"))),
                  ("diff-dro", "Diff-DRO"),
                  ("equal_weights", "equal weights (data-free)"),
                  ("uniform_fraction", "uniform fraction (data-free)"),
                  ("uniform_schedule", "uniform schedule (data-free)"),
                  ("mean_cost", "unconditional mean cost (data-free)"), ("true_mean", "oracle: true mean"),
                  ("oracle_saa", "oracle: true p(c|x), K samples"), ("oracle_exact", "oracle: true p(c|x), exact"))
TABLE1_BASELINES = ("spo+", "spo+_log", "mse", "mse_log", "nce", "map", "pairwise", "listwise", "dfl", "dfl+",
                    "nce_log", "map_log", "pairwise_log", "listwise_log", "dfl_log", "dfl+_log", "diff-dro")
DUPLICATE_RTOL = 1e-4  # table1_cells: two runs' records of one cell agree to this (float32, two processes)
DATA_FREE = ("equal_weights", "uniform_fraction", "uniform_schedule", "mean_cost")
ORDERINGS = (("gen_dfl", "spo+"), ("spo+", "mse"), ("gen_dfl", "mse"), ("gen_dfl", "nll_flow"),
             ("gen_dfl", "diff-dro"), ("gen_dfl", "best"), ("gen_dfl", "data_free"))


def renamed(record):
    """A record with the current field and experiment names."""
    out = {_OLD_NAMES.get(k, k): v for k, v in record.items()}
    if "experiment" in out:
        out["experiment"] = _OLD_EXPERIMENTS.get(out["experiment"], out["experiment"])
    return out


def summarise(recs):
    """Mean and (population) sd over seeds, keyed by everything but seed and regret."""
    groups = {}
    for r in recs:
        key = tuple(sorted((k, v) for k, v in r.items() if k not in ("seed", "regret")))
        groups.setdefault(key, []).append(r["regret"])
    return [dict(**dict(k), mean=float(np.mean(v)), std=float(np.std(v)), n=len(v)) for k, v in groups.items()]


def table(rows):
    """The printed table of :func:`summarise`'s rows."""
    fields = ("problem", "deg", "sigma", "dim", "n_train", "regret_weight", "K", "K_eval",
              "tail_prob_train", "tail_prob_eval", "metric")
    out = [dict(experiment=r["experiment"], setting=", ".join(f"{k}={r[k]}" for k in fields if k in r),
                method=r["method"], regret=f"{r['mean']:.2f} ± {r['std']:.2f}") for r in rows]
    return harness.markdown_table(out, ["experiment", "setting", "method", "regret"])


_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#000000",
            "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")
_MARKERS = "osD^vP*Xh<>"


def plot(rows, out, name, metric="cvar_of_difference"):
    """One panel per experiment (Table 1: per problem, log scale) of the ``metric`` regret; the
    oracle SAA row dashed. Saved as ``out/name.png``."""
    rows = [r for r in rows if r.get("metric", metric) == metric and r["method"] != "true_mean"]
    panels = []
    for e in EXPERIMENTS:
        probs = sorted({r["problem"] for r in rows if r["experiment"] == e})
        panels += [(e, p) for p in probs] if e == "table1" else [(e, None)] * bool(probs)
    ncols = min(4, max(1, len(panels)))
    nrows = max(1, -(-len(panels) // ncols))
    fig, axes = harness.figure(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False)
    xfield = {"table1": "deg", "sigma": "sigma", "dim": "dim", "train_size": "n_train",
              "regret_weight": "regret_weight", "tail_prob": "tail_prob_eval", "samples": "K",
              "decision_samples": "K_eval", "is_gto": "K", "energy": None}
    for ax, (e, prob) in zip(axes.flat, panels):
        sub = [r for r in rows if r["experiment"] == e and (prob is None or r["problem"] == prob)]
        f = xfield[e]
        if f is None:
            ax.bar([r["method"] for r in sub], [r["mean"] for r in sub], yerr=[r["std"] for r in sub])
            ax.tick_params(axis="x", rotation=60)
        else:
            if e == "tail_prob":  # Fig. 5: one line per training level
                sub = [r for r in sub if r["method"] == "gen_dfl"]
            series = {}
            for r in sub:
                label = r["method"]
                label += f" tail_prob_train={r['tail_prob_train']}" if e == "tail_prob" else ""
                label += f" dim={r['dim']}" if e == "is_gto" and "dim" in r else ""
                label += f" tail_prob_eval={r['tail_prob_eval']}" if e == "regret_weight" else ""
                series.setdefault(label, []).append((r[f], r["mean"], r["std"]))
            for i, (label, pts) in enumerate(series.items()):
                pts.sort()
                # more series than one colour cycle: a colour and a marker of their own each
                style = dict(ls="--", color="gray", marker="o") if label.startswith("oracle_saa") else dict(
                    color=_PALETTE[i % len(_PALETTE)], marker=_MARKERS[i % len(_MARKERS)])
                ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts],
                            label=label, capsize=2, **style)
            if f in ("regret_weight", "K", "K_eval", "n_train"):
                ax.set_xscale("log")
            if e == "table1":
                ax.set_yscale("log")
            ax.set_xlabel(f)
            ax.legend(fontsize=6)
        ax.set_title(e if prob is None else f"{e}: {prob}")
        ax.set_ylabel("CVaR regret (%)" if metric == "cvar_of_difference" else "CVaR gap (%)")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    return harness.save_figure(fig, out, name)


def table1_cells(recs, metric="cvar_of_difference"):
    """{(problem, deg, method): {seed: regret}} of the Table 1 records at the default level."""
    cells = {}
    for r in recs:
        if r.get("experiment") != "table1" or r.get("metric") != metric or r.get("tail_prob_eval") != TAIL_PROB:
            continue
        by_seed = cells.setdefault((r["problem"], r["deg"], r["method"]), {})
        regret = float(r["regret"])  # the result JSONs keep NaN as the string "nan"
        # duplicates (the reference rows of two runs on one seed) must agree up to the float32
        # rounding of another process; the first is kept
        if r["seed"] in by_seed:
            if not math.isclose(by_seed[r["seed"]], regret, rel_tol=DUPLICATE_RTOL, abs_tol=1e-6):
                raise ValueError(f"records: two results for {r['problem']} deg {r['deg']} {r['method']} "
                                 f"seed {r['seed']} that differ; pass each run once")
            continue
        by_seed[r["seed"]] = regret
    return cells


def _runs(cells, problem, deg, methods):
    """({method: {seed: regret}} of ``methods`` that ran in the cell, the union of their seeds)."""
    runs = {m: cells[problem, deg, m] for m in methods if (problem, deg, m) in cells}
    return runs, set().union(*runs.values())


def best_baseline(cells, problem, deg, methods=TABLE1_BASELINES):
    """{seed: lowest regret among ``methods`` (default the baselines)}, over the methods that ran
    on every seed any of them ran on; a method with fewer seeds (a partial run, see
    :func:`partial_methods`) is left out. If none ran on all, the seeds where all ran."""
    runs, seeds = _runs(cells, problem, deg, methods)
    if not runs:
        return {}
    complete = [r for r in runs.values() if set(r) == seeds]
    if not complete:
        complete, seeds = list(runs.values()), set.intersection(*(set(r) for r in runs.values()))
    # a NaN regret (a decision layer that did not converge) is no method's best
    return {s: min((r[s] for r in complete if not math.isnan(r[s])), default=math.nan) for s in seeds}


def partial_methods(cells, problem, deg, methods=TABLE1_BASELINES):
    """[(method, its seeds, the cell's seeds)] of ``methods`` that ran on fewer seeds than the
    others: left out of :func:`best_baseline`."""
    runs, seeds = _runs(cells, problem, deg, methods)
    return [(m, len(r), len(seeds)) for m, r in runs.items() if set(r) != seeds]


def ordering(a, b):
    """(wins of a, paired seeds without ties, sign-test p) for per-seed dicts a and b; a seed
    where either is NaN is not paired."""
    pairs = [(a[s], b[s]) for s in a.keys() & b.keys()
             if a[s] != b[s] and not (math.isnan(a[s]) or math.isnan(b[s]))]
    wins = sum(x < y for x, y in pairs)
    p = harness.sign_test(wins, len(pairs) - wins) if pairs else float("nan")
    return wins, len(pairs), p


def mean_sd_cell(values):
    """The cell "mean ± sd (count)" of per-seed values, one decimal ("value (1)" for one value:
    no spread to show); NaN values (a decision layer that did not converge) are counted apart:
    "mean ± sd (count, k NaN)"."""
    finite = [v for v in values if not math.isnan(v)]
    nans = len(values) - len(finite)
    if not finite:
        return f"NaN ({len(values)})"
    mean, sd = harness.mean_sd(finite)
    spread = f" ± {sd:.1f}" if len(finite) > 1 else ""
    return f"{mean:.1f}{spread} ({len(finite)}" + (f", {nans} NaN)" if nans else ")")


_METRICS = {"cvar_of_difference": "Eq. (9) regret (CVaR of the difference)",
            "difference_of_cvars": "CVaR gap (difference of the CVaRs)",
            "abs_difference_of_cvars": "absolute CVaR gap (the authors' code)"}


def verdict(cells, problem, deg, other):
    """Gen-DFL against per-seed ``other``: 'wins' / 'loses' (two-sided sign test p < 0.05),
    'wins on every seed' / 'loses on every seed' (not significant: with 5 seeds the smallest
    p is 0.0625), else 'ties'."""
    if (problem, deg, "gen_dfl") not in cells or not other:
        return "-"
    wins, n, p = ordering(cells[problem, deg, "gen_dfl"], other)
    gen = np.mean([cells[problem, deg, "gen_dfl"][s] for s in other if s in cells[problem, deg, "gen_dfl"]])
    ref = np.mean(list(other.values()))
    if p < 0.05:
        word = "wins" if wins > n - wins else "loses"
    elif n and wins in (0, n):
        word = "wins on every seed" if wins == n else "loses on every seed"
    else:
        word = "ties"
    return f"{word} ({gen:.1f} vs {ref:.1f}; {wins}/{n}, p={p:.2g})"


def table1_report(recs, metric="cvar_of_difference"):
    """Markdown: one table per problem, methods by degree, the per-seed orderings, and the
    verdict of Gen-DFL against the best converged baseline (over the baselines run on every
    seed of the cell; those with fewer seeds are named) and the best data-free row."""
    cells = table1_cells(recs, metric)
    out = [f"{_METRICS.get(metric, metric)} in %, tail_prob (the paper's alpha) = {TAIL_PROB}: mean ± sample "
           "sd over seeds (number of seeds). 'best baseline' / 'best data-free' is the per-seed minimum over "
           "the converged baselines / the data-free rows.", ""]
    for prob in sorted({k[0] for k in cells}):
        degs = sorted({k[1] for k in cells if k[0] == prob})
        out += [f"### {prob}", "", "| method | " + " | ".join(f"deg {d}" for d in degs) + " |",
                "|---" * (len(degs) + 1) + "|"]
        for method, label in TABLE1_METHODS:
            row = [mean_sd_cell(list(cells[prob, d, method].values())) if (prob, d, method) in cells else "-"
                   for d in degs]
            if any(v != "-" for v in row):
                out.append(f"| {label} | " + " | ".join(row) + " |")
            paper = PAPER_TABLE1.get((prob, method))
            if paper:
                vals = [paper[(2, 4, 6, 8).index(d)] if d in (2, 4, 6, 8) else None for d in degs]
                out.append(f"| {label}, paper | " + " | ".join("-" if v is None else f"{v:.2f}" for v in vals) + " |")
        names = dict(TABLE1_METHODS, best="best baseline", data_free="best data-free")
        others = {"best": lambda d: best_baseline(cells, prob, d),
                  "data_free": lambda d: best_baseline(cells, prob, d, DATA_FREE)}
        for a, b in ORDERINGS:
            row = []
            for d in degs:
                right = others[b](d) if b in others else cells.get((prob, d, b))
                if (prob, d, a) in cells and right:
                    wins, n, p = ordering(cells[prob, d, a], right)
                    row.append(f"{wins}/{n} (p={p:.2g})")
                else:
                    row.append("-")
            if any(v != "-" for v in row):
                out.append(f"| seeds {names[a]} < {names[b]} | " + " | ".join(row) + " |")
        left_out = [", ".join(f"{names[m]} ({k} of {n} seeds)" for m, k, n in partial_methods(cells, prob, d))
                    or "-" for d in degs]
        if any(v != "-" for v in left_out):
            out.append("| not in best baseline (fewer seeds) | " + " | ".join(left_out) + " |")
        for b in ("best", "data_free"):
            out.append(f"| **Gen-DFL vs {names[b]}** | " + " | ".join(verdict(cells, prob, d, others[b](d))
                                                                      for d in degs) + " |")
        out.append("")
    return "\n".join(out)


def plot_curves(infos, out, name="baseline_curves"):
    """The validation-regret curves of every tuned baseline run (each learning rate and
    predictor) of the first configuration that has them: convergence shown once."""
    first = next((i for i in infos if i.get("baselines")), None)
    if first is None:
        return None
    methods = sorted(first["baselines"])
    ncols = min(4, len(methods))
    nrows = -(-len(methods) // ncols)
    fig, axes = harness.figure(nrows, ncols, figsize=(4.0 * ncols, 3.0 * nrows), squeeze=False)
    for ax, m in zip(axes.flat, methods):
        choice = first["baselines"][m]
        for run in choice["runs"]:
            ep, val = zip(*run["curve"])
            chosen = run["predictor"] == choice["predictor"] and run["learning_rate"] == choice["learning_rate"]
            ax.plot(ep, val, lw=2 if chosen else 0.8, label=f"{run['predictor']} lr={run['learning_rate']:g}"
                    + (" (chosen)" if chosen else ""))
        ax.set_title(f"{m}: {first.get('problem')} deg {first.get('deg')} seed {first.get('seed')}", fontsize=8)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation regret")
        ax.set_yscale("log")
        ax.legend(fontsize=5)
    for ax in list(axes.flat)[len(methods):]:
        ax.axis("off")
    return harness.save_figure(fig, out, name)

"""The Gen-DFL figure sweeps (Figs. 3-6) as tables: one per experiment, a row per setting and
evaluation level, every method's mean ± sd over seeds, and Gen-DFL's per-seed orderings against
the NLL flow (the same flow without the decision loss) and the best data-free row, written to
``figures.md`` by :func:`write_sweep_report`."""

from __future__ import annotations

import pathlib

from benchmarks.setups.dfl.report import DATA_FREE, TABLE1_METHODS, mean_sd_cell, ordering

SWEEP_FIELDS = {"sigma": "sigma", "dim": "dim", "train_size": "n_train", "regret_weight": "regret_weight",
                "tail_prob": "tail_prob_train", "samples": "K", "decision_samples": "K_eval"}
_LABELS = dict(TABLE1_METHODS)


def _order(a, b):
    if not a or not b:
        return "-"
    wins, n, p = ordering(a, b)
    return f"{wins}/{n} (p={p:.2g})"


def sweep_report(recs, metric="cvar_of_difference"):
    """Markdown tables of the sweep records of ``recs`` at ``metric``."""
    out = []
    for exp, field in SWEEP_FIELDS.items():
        rs = [r for r in recs if r.get("experiment") == exp and r.get("metric") == metric]
        if not rs:
            continue
        by = {}  # (setting, level) -> method -> {seed: regret}
        for r in rs:
            by.setdefault((r[field], r["tail_prob_eval"]), {}).setdefault(r["method"], {})[r["seed"]] = r["regret"]
        methods = [m for m, _ in TABLE1_METHODS if any(m in v for v in by.values())]
        out += [f"### {exp} ({field})", "",
                f"| {field} | tail_prob_eval | " + " | ".join(_LABELS[m] for m in methods)
                + " | seeds Gen-DFL < NLL flow | seeds Gen-DFL < best data-free |",
                "|---" * (len(methods) + 4) + "|"]
        for (v, a), runs in sorted(by.items()):
            free = [runs[m] for m in DATA_FREE if m in runs]
            best_free = {s: min(r[s] for r in free) for s in set.intersection(*map(set, free))} if free else {}
            gen = runs.get("gen_dfl", {})
            out.append(f"| {v} | {a} | " + " | ".join(mean_sd_cell(list(runs[m].values())) if m in runs else "-"
                                                      for m in methods)
                       + f" | {_order(gen, runs.get('nll_flow'))} | {_order(gen, best_free)} |")
        out.append("")
    return "\n".join(out)


def write_sweep_report(recs, out):
    """``out/figures.md`` with the sweep tables of ``recs`` at every metric (none: nothing written)."""
    metrics = sorted({r["metric"] for r in recs if r.get("experiment") != "table1" and "metric" in r})
    tables = [(m, sweep_report(recs, m)) for m in metrics]
    report = "\n\n".join(f"## {m}\n\n{t}" for m, t in tables if t)
    if report:
        (pathlib.Path(out) / "figures.md").write_text(report + "\n")
        print(report)
    return report

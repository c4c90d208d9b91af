"""Table 1 of the Gen-DFL paper from per-seed records: mean ± sd per cell and per-seed orderings.

    python -m benchmarks.seeds.gen_dfl_table1 FILE [FILE ...] [--out DIR]

Each FILE is a ``gen_dfl.json`` of ``benchmarks.seeds.gen_dfl`` (or of
``benchmarks.seeds.gen_dfl_collect``); ``FILE::METHOD,METHOD`` reads only those methods'
records of it (a run that added methods to the cells of earlier runs, whose reference rows
then come from the earlier runs alone); the report of its ``table1`` records
(:func:`benchmarks.setups.dfl.table1_report`) is printed and written to ``DIR/table1.md``,
its cells to ``DIR/table1.json``. Records of the figure sweeps are tabled in ``DIR/figures.md``
(:func:`benchmarks.setups.dfl.sweeps.write_sweep_report`).
"""

from __future__ import annotations

import argparse
import json
import pathlib

from benchmarks import _harness as harness
from benchmarks.setups.dfl import renamed, table1_cells, table1_report
from benchmarks.setups.dfl.sweeps import write_sweep_report


def _records(spec):
    """The records of ``FILE`` or, for ``FILE::METHOD,METHOD``, those of the named methods."""
    path, _, methods = spec.partition("::")
    recs = json.loads(pathlib.Path(path).read_text())["records"]
    if not methods:
        return recs
    wanted = set(methods.split(","))
    missing = wanted - {r.get("method") for r in recs}
    if missing:
        raise ValueError(f"{path} has no records of {sorted(missing)}")
    return [r for r in recs if r.get("method") in wanted]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("files", nargs="+", help="gen_dfl.json files, each optionally FILE::METHOD,METHOD")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("results/gen_dfl_table1"))
    args = parser.parse_args(argv)
    recs = [renamed(r) for f in args.files for r in _records(f)]
    args.out.mkdir(parents=True, exist_ok=True)
    figures = write_sweep_report(recs, args.out)
    metrics = sorted({r["metric"] for r in recs if r.get("experiment") == "table1" and "metric" in r})
    if not metrics:
        return figures
    report = "\n\n".join(table1_report(recs, m) for m in metrics)
    (args.out / "table1.md").write_text(report + "\n")
    cells = [dict(problem=p, deg=d, method=k, metric=m, regrets=by_seed)
             for m in metrics for (p, d, k), by_seed in table1_cells(recs, m).items()]
    harness.write_json(args.out, "table1", dict(sources=[str(f) for f in args.files], cells=cells))
    print(report)
    return report


if __name__ == "__main__":
    main()

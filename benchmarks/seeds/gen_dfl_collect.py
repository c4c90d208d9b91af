"""Merge Gen-DFL result files into one JSON, table and figure.

    python -m benchmarks.seeds.gen_dfl_collect OUT_DIR FILE [FILE ...]

Each FILE is a ``gen_dfl.json`` written by ``benchmarks.seeds.gen_dfl`` or, where a run was
cut short before its JSON came back, its log: the per-configuration lines of a log hold
every method's regret at the first evaluation level (tail_prob 0.1 unless the experiment
varies it) in both forms, and the ``is_gto`` lines their single figure. Records of files
written before the ``tail_prob``/``regret_weight`` names are renamed on read. Table 1
records also give ``table1.md`` (:func:`benchmarks.setups.dfl.table1_report`).
"""

from __future__ import annotations

import json
import pathlib
import re
import sys

from benchmarks import _harness as harness
from benchmarks.setups.dfl import TAIL_PROB, plot, renamed, summarise, table, table1_report

_FIELDS = {"sigma": "sigma", "dim": "dim", "train_size": "n_train", "beta": "regret_weight",
           "regret_weight": "regret_weight", "samples": "K"}
_HEADER = re.compile(r"^  (\w+)=([\d.]+) seed=(\d+)$")
_TABLE1 = re.compile(r"^  table1 (\w+) deg=(\d+) seed=(\d+)$")
_ENERGY = re.compile(r"^  energy .* seed=(\d+)$")
_RESULT = re.compile(r"^\s+[\d.]+ s  (.*)$")
_IS_SEED = re.compile(r"^  is_gto dim=\d+ seed=(\d+)$")
_IS_GTO = re.compile(r"^  is_gto (?:dim=(\d+) )?K=(\d+) importance=(True|False): ([\d.]+)$")
_FORMS = ("cvar_of_difference", "difference_of_cvars")


def records_from_log(path):
    """Records of the per-configuration lines of a ``benchmarks.seeds.gen_dfl`` log."""
    recs, meta, experiment, is_seed = [], None, None, 0
    for line in pathlib.Path(path).read_text().splitlines():
        if line.startswith("[") and line.endswith("]"):
            experiment = renamed({"experiment": line[1:-1]})["experiment"]
        elif m := _HEADER.match(line):
            if m[1] not in _FIELDS:
                raise ValueError(f"{path}: cannot read sweep {m[1]!r} from a log (use its JSON)")
            value = float(m[2])
            meta = dict(problem="portfolio", deg=4, seed=int(m[3]),
                        **{_FIELDS[m[1]]: int(value) if value.is_integer() else value})
        elif m := _TABLE1.match(line):
            meta = dict(problem=m[1], deg=int(m[2]), seed=int(m[3]))
        elif m := _ENERGY.match(line):
            meta = dict(problem="icon_energy", seed=int(m[1]))
        elif m := _IS_SEED.match(line):
            is_seed = int(m[1])
        elif m := _IS_GTO.match(line):
            dim = {} if m[1] is None else {"dim": int(m[1])}
            recs.append(dict(experiment="is_gto", method="is" if m[3] == "True" else "plain", tail_prob_eval=0.05,
                             regret=float(m[4]), K=int(m[2]), seed=is_seed, problem="portfolio", deg=4, **dim))
        elif (m := _RESULT.match(line)) and meta is not None and experiment != "is_gto":
            for item in m[1].split():
                method, _, values = item.partition("=")
                for form, v in zip(_FORMS, values.split("/")):
                    recs.append(dict(experiment=experiment, method=method, tail_prob_eval=TAIL_PROB, metric=form,
                                     regret=float(v), **meta))
            meta = None
    return recs


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2:
        raise SystemExit(__doc__)
    out, files = pathlib.Path(argv[0]), argv[1:]
    recs, devices = [], set()
    for f in files:
        if f.endswith(".json"):
            payload = json.loads(pathlib.Path(f).read_text())
            recs += [renamed(r) for r in payload["records"]]
            devices.add(payload.get("environment", {}).get("device", payload.get("device")))
        else:
            recs += records_from_log(f)
    rows = summarise(recs)
    harness.write_json(out, "gen_dfl", dict(sources=files, devices=sorted(map(str, devices)), records=recs,
                                            summary=rows))
    plot(rows, out, "gen_dfl")
    print(table(rows))
    if any(r.get("experiment") == "table1" for r in recs):
        report = table1_report(recs)
        (out / "table1.md").write_text(report + "\n")
        print(report)


if __name__ == "__main__":
    main()

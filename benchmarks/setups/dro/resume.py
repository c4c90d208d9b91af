"""Resuming a GAS-DRO benchmark run cut short (``benchmarks/seeds/gas_dro.py --resume``): the
seeds and protocols already in its ``gas_dro.json``, and per fit (method, grid value) under
``OUT/partial/seed<S>_<protocol>/<part>/`` its training checkpoint while it trains
(``<method>_<value>.ckpt``, the whole training state: tens of MB for a paper-size GAS-DRO fit)
or its record once it has finished (``.done``), plus the predictor of the grid's best finished
fit so far (``<method>.best``), the only one the run still needs. Every header names the run,
the part, the method, the grid value and the predictor the fit started from.
"""

from __future__ import annotations

import pathlib
import re
import shutil
from typing import Any, NamedTuple

from benchmarks import _harness as harness
from tailjax import checkpoint

RUN_FIELDS = ("size", "settings", "select", "parts", "methods", "capacity")  # what makes two runs one run


def run_identity(report: dict) -> dict:
    """The fields of a report that a resumed run must share with the one it resumes."""
    return harness.as_written({k: report.get(k) for k in RUN_FIELDS})


def finished(path: pathlib.Path, report: dict) -> dict:
    """``per_seed`` of ``path`` (an earlier ``gas_dro.json``) when it belongs to the run of
    ``report``; {} when there is none; an error naming the fields that differ otherwise."""
    return harness.earlier_run(path, {k: report.get(k) for k in RUN_FIELDS}).get("per_seed", {})


def _safe(text: str) -> str:
    """``text`` as a file name (a fit's header, not its name, identifies it)."""
    return re.sub(r"[^\w.=,+-]+", "_", text) or "_"


class FitCheckpoints(NamedTuple):
    """Where the fits of one seed and protocol checkpoint, and the run they belong to."""

    folder: pathlib.Path
    run: dict

    @classmethod
    def open(cls, out: str | pathlib.Path, report: dict, seed: int, protocol: str, *, resume: bool):
        """The folder of ``seed`` and ``protocol`` under ``out/partial``, emptied first unless
        ``resume``."""
        folder = pathlib.Path(out) / "partial" / f"seed{seed}_{protocol}"
        if not resume:
            shutil.rmtree(folder, ignore_errors=True)
        return cls(folder, {**run_identity(report), "seed": seed, "protocol": protocol})

    def path(self, part: str, name: str, tag: str) -> pathlib.Path:
        """The training checkpoint of one fit."""
        return self.folder / _safe(part) / f"{_safe(name)}_{_safe(tag)}.ckpt"

    def describe(self, part: str, name: str, tag: str, start: str | None) -> dict:
        """The ``run`` a fit's checkpoint records: this run, the part, the method, the grid
        value and ``start``, what the predictor started from (None: its initialisation)."""
        return {**self.run, "part": part, "name": name, "tag": tag, "start": start}

    def record(self, part: str, name: str, tag: str, start: str | None) -> dict | None:
        """The record of a finished fit, or None; an error if the file belongs to another fit."""
        path = self.path(part, name, tag).with_suffix(".done")
        if not path.exists():
            return None
        return checkpoint.restore(path, {}, config=self.describe(part, name, tag, start))[2]

    def save_record(self, part: str, name: str, tag: str, start: str | None, record: dict) -> None:
        """Keep a finished fit's record; its training checkpoint goes."""
        path = self.path(part, name, tag)
        checkpoint.save(path.with_suffix(".done"), {}, step=0, config=self.describe(part, name, tag, start),
                        extra=record)
        path.unlink(missing_ok=True)

    def _best(self, part: str, name: str) -> pathlib.Path:
        return self.folder / _safe(part) / f"{_safe(name)}.best"

    def save_best(self, part: str, name: str, tag: str, start: str | None, predictor: Any) -> None:
        """Keep ``predictor`` as the grid's best finished fit (``tag``), replacing the last."""
        checkpoint.save(self._best(part, name), predictor, step=0, config=self.describe(part, name, tag, start))

    def best(self, part: str, name: str, tag: str, start: str | None, template: Any):
        """The kept predictor of fit ``tag``, or None when the kept one is another fit's (a
        process stopped between a fit's record and its predictor)."""
        path = self._best(part, name)
        if not path.exists() or checkpoint.read_header(path)["config"].get("tag") != tag:
            return None
        return checkpoint.restore(path, template, config=self.describe(part, name, tag, start))[0]

    def close(self) -> None:
        """Remove the folder once its seed and protocol are in the run's JSON."""
        shutil.rmtree(self.folder, ignore_errors=True)

"""Sharded estimators and training steps across 2 processes (jax.distributed, gloo on CPU)
equal the single-process results."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

WORKER = pathlib.Path(__file__).with_name("multiprocess_worker.py")
ROOT = pathlib.Path(__file__).resolve().parents[2]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env():
    return {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}


def test_two_processes_match_one(tmp_path):
    port = str(_free_port())
    out = tmp_path / "multi.json"
    procs = [
        subprocess.Popen([sys.executable, str(WORKER), str(i), "2", port, str(out)], cwd=ROOT,
                         env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(2)
    ]
    logs = []
    for p in procs:
        try:
            logs.append(p.communicate(timeout=480)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("a worker did not finish in 480 s")
    assert all(p.returncode == 0 for p in procs), "\n".join(log[-3000:] for log in logs)
    ref_out = tmp_path / "single.json"
    ref = subprocess.run([sys.executable, str(WORKER), str(ref_out)], cwd=ROOT, env=_env(),
                         capture_output=True, text=True, timeout=480)
    assert ref.returncode == 0, ref.stdout[-3000:] + ref.stderr[-3000:]
    multi, single = json.loads(out.read_text()), json.loads(ref_out.read_text())
    assert multi["processes"] == 2 and multi["devices"] == 4
    assert single["processes"] == 1 and single["devices"] == 2
    for key in single:
        if key in ("processes", "devices"):
            continue
        a, b = np.asarray(multi[key]), np.asarray(single[key])
        if key.startswith("cvar_"):
            assert a[0] == b[0], key  # the VaR is bit-exact
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6, err_msg=key)

"""Resuming the GAS-DRO benchmark: the earlier JSON's seeds and protocols, the fits' checkpoints."""

import numpy as np
import pytest

from benchmarks import _harness as harness
from benchmarks.setups.dro.resume import FitCheckpoints, finished, run_identity


def _report(**changes):
    report = {"size": "smoke", "settings": {"gas": {"budget": float(np.float32(0.137))}, "lrs": [1e-3]},
              "select": "ood", "parts": ["carbon"], "methods": ["ML"], "capacity": [[8], "VAE"],
              "command": "python -m benchmarks.seeds.gas_dro", "per_seed": {"0": {"today": {"results": {}}}}}
    return {**report, **changes}


def test_finished_keeps_the_seeds_of_the_same_run_and_refuses_another(tmp_path):
    assert finished(tmp_path / "gas_dro.json", _report()) == {}  # nothing to resume
    harness.write_json(tmp_path, "gas_dro", _report())  # a float32 value in the settings: written short
    again = _report(command="python -m benchmarks.seeds.gas_dro --resume", per_seed={})
    assert finished(tmp_path / "gas_dro.json", again) == {"0": {"today": {"results": {}}}}
    with pytest.raises(SystemExit, match="differs in settings, methods"):
        finished(tmp_path / "gas_dro.json", _report(settings={"lrs": [3e-3]}, methods=["ML", "DML"]))


def test_fit_checkpoints_name_their_run_and_are_emptied_unless_resumed(tmp_path):
    fits = FitCheckpoints.open(tmp_path, _report(), 3, "paper", resume=False)
    path = fits.path("capacity DDPM (8,)", "GAS-DRO (FT)", "lam=0.0,delta=0.01,lr=0.001")
    assert path == tmp_path / "partial" / "seed3_paper" / "capacity_DDPM_8,_" / "GAS-DRO_FT__lam=0.0,delta=0.01,lr=0.001.ckpt"
    run = fits.describe("carbon", "GAS-DRO (FT)", "lam=0.0", "ML lr=0.001")
    assert run == {**run_identity(_report()), "seed": 3, "protocol": "paper", "part": "carbon",
                   "name": "GAS-DRO (FT)", "tag": "lam=0.0", "start": "ML lr=0.001"}
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x")
    assert FitCheckpoints.open(tmp_path, _report(), 3, "paper", resume=True).path("a", "b", "c").parent.parent.exists()
    assert path.exists()  # kept for --resume
    FitCheckpoints.open(tmp_path, _report(), 3, "paper", resume=False)
    assert not path.exists()  # a fresh run starts from nothing
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x")
    fits.close()
    assert not fits.folder.exists()


def test_a_finished_fit_keeps_its_record_and_the_best_fit_its_predictor(tmp_path):
    import jax.numpy as jnp

    from tailjax.checkpoint import CheckpointError

    fits = FitCheckpoints.open(tmp_path, _report(), 0, "today", resume=False)
    training_state = fits.path("carbon", "ML", "lr=0.001")
    training_state.parent.mkdir(parents=True)
    training_state.write_bytes(b"state")
    record = {"validation": 0.25, "mse": {"GB-2021": 0.5}, "evaluations": [[3, 0.25]], "steps": 3}
    assert fits.record("carbon", "ML", "lr=0.001", None) is None
    fits.save_record("carbon", "ML", "lr=0.001", None, record)
    assert not training_state.exists()  # the training state is no longer needed
    assert fits.record("carbon", "ML", "lr=0.001", None) == record
    with pytest.raises(CheckpointError, match="config.start"):  # the same file, another starting point
        fits.record("carbon", "ML", "lr=0.001", "ML lr=0.01")
    template = {"dense": jnp.zeros(3)}
    assert fits.best("carbon", "ML", "lr=0.001", None, template) is None
    fits.save_best("carbon", "ML", "lr=0.001", None, {"dense": jnp.arange(3.0)})
    fits.save_best("carbon", "ML", "lr=0.01", None, {"dense": jnp.ones(3)})  # a better fit replaces it
    assert fits.best("carbon", "ML", "lr=0.001", None, template) is None  # not the kept fit
    assert fits.best("carbon", "ML", "lr=0.01", None, template)["dense"].tolist() == [1.0, 1.0, 1.0]

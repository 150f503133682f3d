"""A crashed server resumes from its last checkpoint and ends bit-identical to an uninterrupted run
(real NVFlare simulator, killed with SIGKILL mid-run, restarted in the same workspace with resume)."""

from __future__ import annotations

import json
import time

import pytest
import torch

from controllers.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from flamby_flare.jobs import job_files, write_files
from tests import golden
from tests.simulator import kill_group, pinned, run_dir, run_simulator, start_simulator

pytestmark = pytest.mark.simulator

ROUNDS = 12


def _checkpoint(state):
    found = sorted((state / "server").glob("**/checkpoint.pt"))
    return found[0] if found else None


def _final(ws):
    out = run_dir(ws)
    summary = json.loads((out / "summary.json").read_text())
    model = torch.load(out / "FL_global_model.pt", weights_only=True)
    return summary, model


# The state a resume restores, by run: FedAdam: m and v (here); Cyclic: the order; SCAFFOLD with DP-SGD and
# Ditto: server control c, and on the sites' disks, per round, their c_i, accountants and personal models (a round
# the restarted server repeats is not counted twice) (tests/test_resume_cyclic_and_dp.py).
DP_DITTO = {
    "dp_sgd": {"max_grad_norm": 1.1, "target_epsilon": 2.0, "delta": 1e-3},
    "personalization": {"method": "ditto", "ditto_lambda": 0.1},
}


@pytest.mark.parametrize("strategy,variant", [("fedadam", {})])
def test_killed_server_resumes_bit_identical(strategy, variant, tmp_path, data_root):
    check_killed_server_resumes(strategy, variant, tmp_path, data_root)


def check_killed_server_resumes(strategy: str, variant: dict, tmp_path, data_root) -> None:
    """A ``strategy`` heart run whose server is SIGKILLed after round 3, resumed: bit-identical to one run
    straight through (also used by ``tests/test_resume_cyclic_and_dp.py``, a module of its own so that
    xdist runs it beside this one)."""
    job = write_files(
        tmp_path / "job", job_files("fed_heart_disease", strategy, seed=11, num_rounds=ROUNDS, resume=True, **variant)
    )
    ref, ws, state = tmp_path / "ref", tmp_path / "crashed", tmp_path / "state"
    proc = run_simulator(
        job, ref, 4, {"FLAMBY_FLARE_DATA": str(data_root), "FLAMBY_FLARE_STATE": str(tmp_path / "ref_state")}
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    golden.check(f"resume/heart_{strategy}{'_dp_ditto' if variant else ''}_seed11", pinned(run_dir(ref)))

    env = {"FLAMBY_FLARE_DATA": str(data_root), "FLAMBY_FLARE_STATE": str(state)}
    sim = start_simulator(job, ws, 4, env, tmp_path / "crashed.log")
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            path = _checkpoint(state)
            if path is not None and load_checkpoint(path).rounds_done >= 3:
                break
            assert sim.poll() is None, (tmp_path / "crashed.log").read_text()[-2000:]
            time.sleep(0.05)
    finally:
        kill_group(sim)
    done = load_checkpoint(_checkpoint(state)).rounds_done
    assert 3 <= done < ROUNDS, f"killed after round {done}: the test needs a run that is still going"
    assert not (run_dir(ws) / "summary.json").exists()

    proc = run_simulator(job, ws, 4, env)  # the job has resume=True; the simulator wipes its workspace
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert _checkpoint(state) is None  # a finished run leaves nothing to resume
    assert not any((state / "site-1").glob("**/*.npz"))  # nor site state

    (ref_summary, ref_model), (summary, model) = _final(ref), _final(ws)
    assert ref_summary["resumed_after_round"] is None and summary["resumed_after_round"] == done
    assert summary["per_site"] == ref_summary["per_site"]
    for key in ("privacy", "per_site_personalized"):  # the DP ledger and the personalized metrics, when on
        assert summary.get(key) == ref_summary.get(key)
    if variant:
        assert all(0.98 * 2.0 < r[0]["epsilon"] <= 2.0 for r in summary["privacy"].values())  # spent once, not more
    strip = lambda history: [{k: h[k] for k in ("round", "train_loss", "per_site", "order") if k in h} for h in history]  # noqa: E731
    assert strip(summary["history"]) == strip(ref_summary["history"])
    for part in ("model", "strategy_state"):
        flat_ref, flat = ref_model[part], model[part]
        if part == "strategy_state":
            flat_ref = {f"{n}.{k}": v for n, s in flat_ref.items() for k, v in s.items()}
            flat = {f"{n}.{k}": v for n, s in flat.items() for k, v in s.items()}
        assert flat.keys() == flat_ref.keys()
        for key in flat:
            assert torch.equal(flat[key], flat_ref[key]), f"{part}/{key} differs after resume"


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path, data_root):
    """A checkpoint of a different run is not silently continued: the run fails naming what differs."""
    ckpt = tmp_path / "state" / "server" / "ckpt"  # checkpoint_dir "ckpt": a folder of the server's state root
    save_checkpoint(
        ckpt / "checkpoint.pt",
        Checkpoint(
            config={"strategy": "FedAvg", "plan": {}, "rounds": 2, "hyperparameters": {}, "sites": []},
            rounds_done=1,
            params={},
        ),
    )
    job = write_files(
        tmp_path / "job",
        job_files("fed_heart_disease", "fedavg", seed=2, num_rounds=2, resume=True, checkpoint_dir="ckpt"),
    )
    proc = run_simulator(
        job, tmp_path / "ws", 4, {"FLAMBY_FLARE_DATA": str(data_root), "FLAMBY_FLARE_STATE": str(tmp_path / "state")}
    )
    assert proc.returncode != 0
    log = (tmp_path / "ws" / "server" / "log.txt").read_text()
    assert "cannot resume from" in log and "different hyperparameters, plan, sites" in log


def test_a_checkpoint_keeps_everything_a_resume_needs_exactly(tmp_path):
    """Tensors for the arrays, one JSON string for the rest (floats round-trip exactly), and the server's random
    generators: a resumed run draws what the uninterrupted one drew next. Loads with weights_only."""
    import random

    import numpy as np

    from controllers.checkpoint import Checkpointer
    from flamby_flare.seeding import get_rng_state

    config = {"strategy": "FedYogi", "hyperparameters": {"betas": (0.9, 0.999)}, "sites": ["site-1", "site-2"]}
    history = [
        {"round": 1, "train_loss": 1 / 3, "per_site": {"site-1": float("nan"), "site-2": 0.1}, "order": ["site-2"]}
    ]
    params = {"w": np.arange(6, dtype=np.float32).reshape(2, 3) / 7, "n": np.array([3], dtype=np.int64)}
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    random.random(), np.random.rand(), torch.rand(1)
    keeper = Checkpointer(tmp_path / "run", config, "run-1")
    keeper.save(1, params, {"m": {"w": params["w"] * 2}}, history, {"site-3": 1})
    expected = (random.random(), float(np.random.rand()), torch.rand(2))
    assert set(torch.load(keeper.path, weights_only=True)) == {
        "format",
        "meta",
        "params",
        "strategy_state",
        "rng_tensors",
    }
    loaded = Checkpointer(tmp_path / "run", config, "run-1").resume()  # the same config, its tuple as saved
    assert loaded.rounds_done == 1 and loaded.dropped == {"site-3": 1} and loaded.run_id == "run-1"
    assert json.dumps(loaded.history) == json.dumps(history) and loaded.history[0]["train_loss"] == 1 / 3
    assert all(np.array_equal(loaded.params[k], v) and loaded.params[k].dtype == v.dtype for k, v in params.items())
    assert np.array_equal(loaded.strategy_state["m"]["w"], params["w"] * 2)
    assert (random.random(), float(np.random.rand())) == expected[:2] and torch.equal(torch.rand(2), expected[2])
    assert get_rng_state()["python"][0] == 3

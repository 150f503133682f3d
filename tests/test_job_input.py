"""Bad input at the job level is refused at start, in one line that says what is wrong (and where)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from flamby_flare.jobs import job_files, write_files
from tests.simulator import run_dir, run_simulator, simulator_command

pytestmark = pytest.mark.simulator


def _job(tmp_path, edit_server=None, **variant):
    files = job_files("fed_heart_disease", "fedavg", num_rounds=1, train_timeout=60, validate_timeout=60, **variant)
    if edit_server:
        server = json.loads(files["app/config/config_fed_server.json"])
        edit_server(server["workflows"][0])
        files["app/config/config_fed_server.json"] = json.dumps(server)
    return write_files(tmp_path / "job", files)


def _failed_log(proc, ws) -> str:
    assert proc.returncode != 0
    assert not (run_dir(ws) / "summary.json").exists()
    return (ws / "server" / "log.txt").read_text() + proc.stdout + proc.stderr


def test_unknown_strategy(tmp_path, data_root):
    job = _job(tmp_path, lambda wf: wf.update(path="controllers.FedNope"))
    proc = run_simulator(job, tmp_path / "ws", 4, {"FLAMBY_FLARE_DATA": str(data_root)}, timeout=600)
    log = _failed_log(proc, tmp_path / "ws")
    assert "unknown strategy 'FedNope'; flamby-flare strategies: controllers.FedAvg, controllers.FedProx" in log


def test_unknown_dataset(tmp_path, data_root):
    job = _job(tmp_path, lambda wf: wf["args"].update(dataset="fed_nope"))
    proc = run_simulator(job, tmp_path / "ws", 4, {"FLAMBY_FLARE_DATA": str(data_root)}, timeout=600)
    log = _failed_log(proc, tmp_path / "ws")
    assert "unknown dataset 'fed_nope'; known datasets: " in log and "fed_heart_disease" in log


def test_site_count_that_does_not_match_the_dataset(tmp_path, data_root):
    """A job deployed to @ALL, run with three sites: the controller names the missing center."""
    job = _job(tmp_path)
    meta = json.loads((job / "meta.json").read_text())
    (job / "meta.json").write_text(json.dumps({**meta, "min_clients": 3, "deploy_map": {"app": ["@ALL"]}}))
    ws = tmp_path / "ws"
    cmd = simulator_command(job, ws, 3) + ["-n", "3"]
    proc = subprocess.run(
        cmd, env={**os.environ, "FLAMBY_FLARE_DATA": str(data_root)}, capture_output=True, text=True, timeout=600
    )
    log = _failed_log(proc, ws)
    assert "fed_heart_disease has 4 centers, so its sites must be site-1 .. site-4: missing site-4" in log


def test_missing_data_root_on_one_site(tmp_path, data_root):
    """Site-3 runs its own app whose data root is empty: the run stops at start, naming site-3."""
    files = job_files("fed_heart_disease", "fedavg", num_rounds=1, train_timeout=60, validate_timeout=60)
    meta = json.loads(files["meta.json"])
    meta["deploy_map"] = {"app": ["server", "site-1", "site-2", "site-4"], "app_site3": ["site-3"]}
    files["meta.json"] = json.dumps(meta)
    client = json.loads(files["app/config/config_fed_client.json"])
    client["executors"][0]["executor"]["args"]["data_root"] = str(tmp_path / "nowhere")
    files["app_site3/config/config_fed_client.json"] = json.dumps(client)
    job = write_files(tmp_path / "job", files)
    proc = run_simulator(job, tmp_path / "ws", 4, {"FLAMBY_FLARE_DATA": str(data_root)}, timeout=600)
    log = _failed_log(proc, tmp_path / "ws")
    site3 = tmp_path / "ws" / "site-3" / "log.txt"
    log += site3.read_text() if site3.is_file() else ""
    assert "site-3: Fed-Heart-Disease not found: " in log and "processed.switzerland.data is missing" in log

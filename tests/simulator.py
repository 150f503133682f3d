"""Run a job in the real NVFlare simulator, as a subprocess with a hard timeout."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from pathlib import Path


def simulator_command(job: Path, workspace: Path, threads: int) -> list[str]:
    """``nvflare simulator JOB -w WORKSPACE -t THREADS`` as a user types it: nothing prepared (a job written
    without custom code needs ``flamby_flare.simulator.prepare_workspace`` first)."""
    from flamby_flare.simulator import command

    return command(job, workspace, threads)


def run_simulator(
    job: Path, workspace: Path, threads: int | None, env: dict, timeout: int = 900, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """The simulator run, as the product runs it (``flamby_flare.simulator.run``: a run a site worker lost to
    NVFlare's port race is run again), failed after ``timeout`` s (generous: a run is minutes at most, also on a
    loaded machine). ``threads`` None: ``nvflare simulator JOB`` exactly as typed, in ``cwd``, whose
    ``simulator_workspace`` NVFlare then uses (pass it as ``workspace``)."""
    from flamby_flare.simulator import run

    cmd = simulator_command(job, workspace, threads) if threads else ["nvflare", "simulator", str(job)]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        code = run(
            cmd,
            workspace,
            timeout=timeout,
            env={**os.environ, "OMP_NUM_THREADS": "1", **env},
            stdout=out,
            stderr=err,
            text=True,
            cwd=cwd,
        )
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(cmd, code, out.read(), err.read())


def start_simulator(job: Path, workspace: Path, threads: int, env: dict, log: Path) -> subprocess.Popen:
    """The simulator in its own process group (``kill_group`` ends it and every process it started)."""
    with open(log, "w") as out:
        return subprocess.Popen(
            simulator_command(job, workspace, threads),
            env={**os.environ, "OMP_NUM_THREADS": "1", **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def site_worker_pids(workspace: Path, site: str) -> list[int]:
    """The processes running ``site``'s worker of the simulator run on ``workspace``: NVFlare's own command
    line, or a worker forked from that run's forkserver (the forkserver's command line, the site's name as
    its process name, a descendant of the run's server)."""
    table = {}
    for proc in Path("/proc").iterdir():
        try:
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            table[int(proc.name)] = (parent, cmdline, (proc / "comm").read_text().strip())
        except (ValueError, OSError, IndexError):
            continue

    def in_run(pid: int) -> bool:
        while pid in table:
            if str(workspace) in table[pid][1]:
                return True
            pid = table[pid][0]
        return False

    return [
        pid
        for pid, (_, cmdline, comm) in table.items()
        if (f"--client {site} " in cmdline and str(workspace) in cmdline) or (comm == site and in_run(pid))
    ]


def forked_sites(workspace: Path) -> dict[str, bool]:
    """Per site: whether its worker logged that it was forked from the simulator's forkserver."""
    from executors.simulator_shim import FORKED_MESSAGE

    return {
        log.parent.name: FORKED_MESSAGE in log.read_text(errors="replace")
        for log in sorted(workspace.glob("site-*/log.txt"))
    }


def run_dir(workspace: Path) -> Path:
    return workspace / "server" / "simulate_job"


def run_job(tmp_path: Path, data_root: Path, dataset: str, strategy: str, **variant) -> tuple[Path, dict, dict]:
    """``write_job(dataset, strategy, **variant)`` run in the simulator with a live process per site (4):
    its run directory, summary and saved checkpoint (``FL_global_model.pt``)."""
    import json

    import torch

    from flamby_flare.jobs import write_job

    job = write_job(dataset, strategy, tmp_path, **variant)
    proc = run_simulator(job, tmp_path / "ws", 4, {"FLAMBY_FLARE_DATA": str(data_root)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = run_dir(tmp_path / "ws")
    return (
        out,
        json.loads((out / "summary.json").read_text()),
        torch.load(out / "FL_global_model.pt", weights_only=True),
    )


# Fewer processes than sites: NVFlare starts a site's process anew for every task, so whatever a site keeps
# between rounds must survive the swap. Two for four sites swap as one does, in half the wall time.
SWAPPED = 2


def run_live_and_swapped(job: Path, root: Path, data_root: Path, live_env: dict | None = None) -> dict[int, Path]:
    """Run ``job`` with a live process per site (-t 4, with ``live_env`` besides) and with swapped processes
    (-t ``SWAPPED``); the workspaces by -t."""
    runs = {}
    for threads in (4, SWAPPED):
        ws = root / f"ws_t{threads}"
        extra = (live_env or {}) if threads == 4 else {}
        proc = run_simulator(job, ws, threads, {"FLAMBY_FLARE_DATA": str(data_root), **extra})
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        runs[threads] = ws
    return runs


def pinned(out: Path) -> dict:
    """What a finished run's results pin (for ``tests.golden``): the per-site metrics (global and
    personalized), every round's per-site training losses (and Cyclic's orders), the privacy each site
    spent, and the final model and strategy state."""
    import json

    import torch

    from tests.golden import fingerprint

    summary = json.loads((out / "summary.json").read_text())
    history = [
        {"per_site": h["per_site"], **({"order": h["order"]} if "order" in h else {})} for h in summary["history"]
    ]
    privacy = {
        site: [{k: r[k] for k in ("mechanism", "noise_multiplier", "epsilon", "steps")} for r in records]
        for site, records in (summary.get("privacy") or {}).items()
    }
    result = {
        "per_site": summary["per_site"],
        "per_site_personalized": summary.get("per_site_personalized"),
        "history": history,
        "privacy": privacy,
    }
    model_file = out / "FL_global_model.pt"
    if model_file.is_file():
        saved = torch.load(model_file, weights_only=True)
        result["model"] = fingerprint(saved["model"])
        result["strategy_state"] = {name: fingerprint(state) for name, state in saved["strategy_state"].items()}
    return result


def synthetic_image_run(
    tmp_path, dataset: str, threads: int, data_root, strategy: str = "fedavg", num_rounds: int = 1, **variant
) -> dict:
    """``num_rounds`` of ``strategy`` on the synthetic data, seed 5: its recorded result (``tests.golden``)."""
    import json

    from flamby_flare.jobs import write_job
    from tests import golden

    job = write_job(dataset, strategy, tmp_path, num_rounds=num_rounds, seed=5, **variant)
    proc = run_simulator(job, tmp_path / "ws", threads, {"FLAMBY_FLARE_DATA": str(data_root)}, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = run_dir(tmp_path / "ws")
    golden.check(f"image/{dataset}_{strategy}", pinned(out))
    return json.loads((out / "summary.json").read_text())


def read_streams(out: Path) -> dict[str, dict[str, dict[int, float]]]:
    """A run's TensorBoard event files read back: site (or server) -> tag -> {step: value}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    streams = {}
    for folder in sorted((out / "tb_events").iterdir()):
        events = EventAccumulator(str(folder))
        events.Reload()
        streams[folder.name] = {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}
    return streams


def undo_request_shims(monkeypatch) -> None:
    """What ``executors.simulator_requests`` patches in NVFlare's classes and modules, restored after the test
    (a test that applies the shim in its own process)."""
    from nvflare.apis.impl import wf_comm_server
    from nvflare.fuel.f3.cellnet import core_cell
    from nvflare.fuel.f3.cellnet.cell import Cell
    from nvflare.private.fed.server.server_runner import ServerRunner

    monkeypatch.setattr(core_cell, "decode_payload", core_cell.decode_payload)
    comm = wf_comm_server.WFCommServer
    for owner, name in (
        (ServerRunner, "_try_to_get_task"),
        (comm, "_schedule_task"),
        (comm, "process_submission"),
        (comm, "check_tasks"),
    ):
        monkeypatch.setattr(owner, name, owner.__dict__[name])
    monkeypatch.setattr(wf_comm_server, "time", wf_comm_server.time)
    if "send_request" in Cell.__dict__:
        monkeypatch.setattr(Cell, "send_request", Cell.__dict__["send_request"])
    else:  # NVFlare's Cell has none (its __getattr__ dispatches): absent again afterwards
        monkeypatch.setattr(Cell, "send_request", None, raising=False)
        monkeypatch.delattr(Cell, "send_request")

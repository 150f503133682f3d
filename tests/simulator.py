"""Run a job in the real NVFlare simulator, as a subprocess with a hard timeout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


def simulator_command(job: Path, workspace: Path, threads: int) -> list[str]:
    nvflare = Path(sys.executable).with_name("nvflare")
    return [str(nvflare), "simulator", str(job), "-w", str(workspace), "-t", str(threads)]


def run_simulator(job: Path, workspace: Path, threads: int, env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(simulator_command(job, workspace, threads), env=full_env, capture_output=True, text=True, timeout=timeout)


def start_simulator(job: Path, workspace: Path, threads: int, env: dict, log: Path) -> subprocess.Popen:
    """The simulator in its own process group (``kill_group`` ends it and every process it started)."""
    with open(log, "w") as out:
        return subprocess.Popen(
            simulator_command(job, workspace, threads), env={**os.environ, "OMP_NUM_THREADS": "1", **env},
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def run_dir(workspace: Path) -> Path:
    return workspace / "server" / "simulate_job"


def run_live_and_swapped(job: Path, root: Path, data_root: Path) -> dict[int, Path]:
    """Run ``job`` with a live process per site (-t 4) and with one swapped process (-t 1); the workspaces by -t."""
    runs = {}
    for threads in (4, 1):
        ws = root / f"ws_t{threads}"
        proc = run_simulator(job, ws, threads, {"FLAMBY_FLARE_DATA": str(data_root)})
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        runs[threads] = ws
    return runs

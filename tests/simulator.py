"""Run a job in the real NVFlare simulator, as a subprocess with a hard timeout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_simulator(job: Path, workspace: Path, threads: int, env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    nvflare = Path(sys.executable).with_name("nvflare")
    cmd = [str(nvflare), "simulator", str(job), "-w", str(workspace), "-t", str(threads)]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=timeout)


def run_dir(workspace: Path) -> Path:
    return workspace / "server" / "simulate_job"

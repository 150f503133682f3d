"""Run a (shortened) job in the real NVFlare simulator, as a subprocess with a hard timeout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from flamby_flare.jobs import job_files


def write_short_job(dataset: str, strategy: str, root: Path, **controller_args) -> Path:
    """The generated job with some controller arguments overridden (e.g. fewer rounds)."""
    folder = root / f"{dataset}_{strategy}"
    for rel, content in job_files(dataset, strategy).items():
        if rel.endswith("config_fed_server.json"):
            config = json.loads(content)
            config["workflows"][0]["args"].update(controller_args)
            content = json.dumps(config, indent=2)
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return folder


def run_simulator(job: Path, workspace: Path, threads: int, env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    nvflare = Path(sys.executable).with_name("nvflare")
    cmd = [str(nvflare), "simulator", str(job), "-w", str(workspace), "-t", str(threads)]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=timeout)


def run_dir(workspace: Path) -> Path:
    return workspace / "server" / "simulate_job"

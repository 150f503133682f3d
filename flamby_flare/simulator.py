"""NVFlare's simulator for this project's jobs: ``flamby-flare simulator JOB [-w WS] [-t N]``.

The workspace gets the site policy that admits this project's classes (``site_policy``; the simulator copies
``<workspace>/local/`` to the server and every site), then ``nvflare simulator`` runs the job, by default
with one live process per site (NVFlare's own default, one process swapped between the sites for every
task, is several times slower and gives the same results). Plain ``nvflare simulator JOB -w WS`` works on a
workspace prepared so once.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from flamby_flare.errors import FlambyFlareError
from flamby_flare.paths import check_writable
from flamby_flare.site_policy import admit_project_classes


def prepare_workspace(workspace: str | os.PathLike) -> Path:
    """``workspace/local/resources.json`` admitting this project's classes; returns the workspace."""
    workspace = check_writable(workspace, "simulator workspace")
    admit_project_classes(workspace / "local")
    return workspace


def job_sites(job: str | os.PathLike) -> int:
    """How many sites ``job``'s deploy map names."""
    meta_file = Path(job) / "meta.json"
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise FlambyFlareError(f"{job} is not an NVFlare job folder ({meta_file}: {exc})") from None
    sites = {s for targets in meta.get("deploy_map", {}).values() for s in targets if s not in ("server", "@ALL")}
    return max(1, len(sites))


def command(job: str | os.PathLike, workspace: str | os.PathLike, threads: int | None = None) -> list[str]:
    """The ``nvflare simulator`` command line (``threads`` None: one process per site of the job)."""
    nvflare = str(Path(sys.executable).with_name("nvflare"))
    return [nvflare, "simulator", str(job), "-w", str(workspace), "-t", str(threads or job_sites(job))]

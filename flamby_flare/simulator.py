"""NVFlare's simulator for this project's jobs: ``flamby-flare simulator JOB [-w WS] [-t N]``.

``nvflare simulator JOB`` runs every committed job as it is (they carry NVFlare's mark of a job with its own
code, ``flamby_flare.jobs.CUSTOM_README``). ``flamby-flare simulator`` adds the conveniences: by default one
live process per site (NVFlare's own default, one process swapped between the sites for every task, is
about three times slower and gives the same results), a workspace under the system's temporary folder, and a
site policy admitting this project's classes in that workspace (``site_policy``; the simulator copies
``<workspace>/local/`` to the server and every site), which a job written without custom code
(``flamby-flare jobs --no-custom-code``) needs.
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


def _deploy_map(job: str | os.PathLike) -> dict:
    meta_file = Path(job) / "meta.json"
    try:
        return json.loads(meta_file.read_text()).get("deploy_map", {})
    except (OSError, json.JSONDecodeError, AttributeError) as exc:
        raise FlambyFlareError(f"{job} is not an NVFlare job folder ({meta_file}: {exc})") from None


def _generated_sites(job: str | os.PathLike) -> int:
    """The sites of a job deployed to ``@ALL`` (a generated dataset's): the centers of its dataset as
    generated in this machine's data root."""
    from flamby_flare.datasets import get_constants

    config = Path(job) / "app" / "config" / "config_fed_server.json"
    try:
        dataset = json.loads(config.read_text())["workflows"][0]["args"]["dataset"]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        raise FlambyFlareError(f"{job} deploys to @ALL but {config} names no dataset to count the sites of") from None
    return int(get_constants(dataset).NUM_CLIENTS)


def job_sites(job: str | os.PathLike) -> int:
    """How many sites ``job`` runs: those its deploy map names, or for ``@ALL`` its dataset's centers."""
    targets = {s for targets in _deploy_map(job).values() for s in targets if s != "server"}
    if "@ALL" in targets:
        return _generated_sites(job)
    return max(1, len(targets))


def command(job: str | os.PathLike, workspace: str | os.PathLike, threads: int | None = None,
            log_config: str | os.PathLike | None = None) -> list[str]:
    """The ``nvflare simulator`` command line (``threads`` None: one process per site of the job; a job
    deployed to ``@ALL`` gets ``-n``, its number of sites; ``log_config``: NVFlare's ``-l``)."""
    nvflare = str(Path(sys.executable).with_name("nvflare"))
    sites = job_sites(job)
    everyone = any("@ALL" in targets for targets in _deploy_map(job).values())
    return [nvflare, "simulator", str(job), "-w", str(workspace), *(["-n", str(sites)] if everyone else []),
            "-t", str(threads or sites), *(["-l", str(log_config)] if log_config is not None else [])]


# This project's packages, whose INFO lines a quiet log keeps (the controllers' round lines among them).
OWN_LOGGERS = ("controllers", "executors", "flamby_flare", "privacy")


def write_quiet_log_config(path: str | os.PathLike) -> Path:
    """NVFlare's default log configuration (its handlers and files) with NVFlare's own lines from WARNING up
    and this project's from INFO: for runs whose per-task lines nobody reads (the benchmark's jobs, about ten
    lines a site and round, each formatted four times in the processes the rounds wait on)."""
    import copy

    from nvflare.fuel.utils.log_utils import default_log_dict

    config = copy.deepcopy(default_log_dict)
    config["loggers"]["root"]["level"] = "WARNING"
    config["loggers"].update({name: {"level": "INFO"} for name in OWN_LOGGERS})
    path = Path(path)
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path

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
import re
import shutil
import subprocess
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


def command(
    job: str | os.PathLike,
    workspace: str | os.PathLike,
    threads: int | None = None,
    log_config: str | os.PathLike | None = None,
) -> list[str]:
    """The ``nvflare simulator`` command line (``threads`` None: one process per site of the job; a job
    deployed to ``@ALL`` gets ``-n``, its number of sites; ``log_config``: NVFlare's ``-l``)."""
    nvflare = str(Path(sys.executable).with_name("nvflare"))
    sites = job_sites(job)
    everyone = any("@ALL" in targets for targets in _deploy_map(job).values())
    return [
        nvflare,
        "simulator",
        str(job),
        "-w",
        str(workspace),
        *(["-n", str(sites)] if everyone else []),
        "-t",
        str(threads or sites),
        *(["-l", str(log_config)] if log_config is not None else []),
    ]


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


_ERROR = re.compile(r" - ERROR - (?:\[[^\]]*\] - )?(.*)$")
_WRAPPERS = re.compile(
    r"^(?:Aborting current RUN due to FATAL_SYSTEM_ERROR received: |Exception in model controller run: "
    r"|RuntimeError: |Simulator run error: )+"
)


def failure_reason(workspace: str | os.PathLike) -> str | None:
    """The first error a failed simulator run logged, as one line: the server's, else a site's, without
    NVFlare's context and wrappers (None: no error logged)."""
    workspace = Path(workspace)
    for log in [workspace / "server" / "log.txt", *sorted(workspace.glob("site-*/log.txt"))]:
        try:
            lines = log.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            match = _ERROR.search(line)
            if match and not match.group(1).startswith("Traceback"):
                return _WRAPPERS.sub("", match.group(1).rsplit("exception: ", 1)[-1])
    return None


# NVFlare 2.9's simulator picks a free port for each site worker, closes it, and lets the worker bind it later
# (nvflare/fuel/utils/network_utils.py::get_open_ports): another process can take it in between. The worker then
# dies at start and the run waits for it until its task timeout. That is NVFlare's race, not the job's: a run a
# site lost to it is stopped and run again, at most RACE_ATTEMPTS times.
PORT_RACE = "OSError: [Errno 98] Address already in use"
RACE_ATTEMPTS = 3


def lost_to_the_port_race(workspace: str | os.PathLike) -> bool:
    """Whether a site worker of the run on ``workspace`` died of NVFlare's port race."""
    try:
        return any(PORT_RACE in log.read_text(errors="replace") for log in Path(workspace).glob("site-*/log.txt"))
    except OSError:  # the simulator is creating or wiping the workspace just now
        return False


def _raced(proc: subprocess.Popen, workspace: Path, deadline: float | None) -> bool:
    """Wait for ``proc``; True (``proc`` stopped) as soon as a site worker of its run lost the port race; past
    ``deadline`` (``time.monotonic``), ``proc`` stopped and ``TimeoutExpired``."""
    import time

    from flamby_flare.processes import stop_tree

    while True:
        try:
            proc.wait(timeout=0.5)
            return False
        except subprocess.TimeoutExpired:
            if lost_to_the_port_race(workspace):
                stop_tree(proc)
                return True
            if deadline is not None and time.monotonic() > deadline:
                stop_tree(proc)
                raise subprocess.TimeoutExpired(proc.args, 0) from None


def run(
    cmd: list[str], workspace: str | os.PathLike, attempts: int = RACE_ATTEMPTS, timeout: float | None = None, **popen
) -> int:
    """``cmd`` (``nvflare simulator`` on ``workspace``) in a session of its own, waited for; a run a site worker
    lost to NVFlare's port race is stopped and run again (its sites' folders wiped first); Ctrl-C (or any
    exception here) stops the simulator and every process it started, and so does ``timeout`` seconds in all
    (``subprocess.TimeoutExpired``). Returns the exit code."""
    import time

    from flamby_flare.processes import stop_tree

    workspace, attempt = Path(workspace), 1
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        proc = subprocess.Popen(cmd, start_new_session=True, **popen)
        try:
            raced = _raced(proc, workspace, deadline)
        except BaseException:
            stop_tree(proc)
            raise
        if not raced or attempt == attempts:
            return proc.returncode
        attempt += 1
        print(
            f"[flamby-flare] a site worker lost NVFlare's port race (another process took its port): running the "
            f"job again ({attempt}/{attempts})",
            file=sys.stderr,
            flush=True,
        )
        for site in workspace.glob("site-*"):
            shutil.rmtree(site, ignore_errors=True)

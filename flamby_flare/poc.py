"""NVFlare POC mode for flamby-flare: real server and site processes on one machine, each site with only
its own center's data.

Thin wrappers over ``nvflare poc prepare|start|stop`` and NVFlare's admin API (``new_secure_session``):

- ``up``: provision a POC with ``site-1 .. site-N`` (mTLS certificates and job signing as NVFlare ships
  them; each participant's class allow-list admits this project's classes, ``site_policy``), give site k a data root holding only FLamby center k-1's files (``<workspace>/data/site-k``,
  named in its kit's ``local/flamby_flare.json``), then start server and sites;
- ``run``: submit a job folder as the project admin, follow it, download its result and report;
- ``down``: stop everything, and kill any process of the POC that outlives the graceful stop.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from flamby_flare.errors import RUN_STOPPED_EARLY, FlambyFlareError
from flamby_flare.paths import SITE_CONFIG, STATE_ENV
from flamby_flare.sites import site_name

ADMIN = "admin@nvidia.com"  # NVFlare's POC project admin
WORKSPACE_ENV = "NVFLARE_POC_WORKSPACE"
_ROUND = re.compile(r"round (\d+)/(\d+)")
_SITE_FAILURE = re.compile(r"Failing job (\S+) due to reported failure from (\S+): (.*)$")
_NVFLARE_FAILURE = re.compile(r"Failing job ([0-9a-f-]+): (.*)$")
_FAILURE = re.compile(r"Exception in model controller run: (?:[A-Za-z]*Error: )?(.*)$")


class PocError(FlambyFlareError):
    """A POC step failed; the message says which and where to look."""


def default_workspace() -> Path:
    """``NVFLARE_POC_WORKSPACE``, else the workspace ``nvflare poc`` itself would use."""
    if os.environ.get(WORKSPACE_ENV):
        return Path(os.environ[WORKSPACE_ENV])
    from nvflare.tool.poc.poc_commands import get_poc_workspace

    return Path(get_poc_workspace())


@dataclass
class JobOutcome:
    job_id: str
    status: str
    result_dir: Path | None
    seconds: float
    reason: str | None = None

    @property
    def ok(self) -> bool:
        """The run finished its protocol: NVFlare says COMPLETED, or its result holds the run's summary
        (NVFlare 2.9 marks a job failed when a site lost mid-run is declared dead after the run ended)."""
        return self.status == "FINISHED:COMPLETED" or self.summary is not None

    @property
    def summary(self) -> Path | None:
        path = self.result_dir / "workspace" / "summary.json" if self.result_dir else None
        return path if path is not None and path.is_file() else None


class Poc:
    """One POC workspace (``nvflare poc`` layout: ``<workspace>/<project>/prod_NN/<participant>/``)."""

    def __init__(self, workspace: str | os.PathLike | None = None):
        self.workspace = Path(workspace or default_workspace()).resolve()

    # ---- processes ------------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """The environment of the POC processes: this Python first on PATH (the kits' scripts run
        ``python3``), one torch thread per process, run state kept in the workspace."""
        bin_dir = str(Path(sys.executable).parent)
        return {
            **os.environ,
            WORKSPACE_ENV: str(self.workspace),
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
            STATE_ENV: os.environ.get(STATE_ENV) or str(self.workspace / "state"),
        }

    def _nvflare(self, *args: str, timeout: float = 300) -> str:
        cmd = [str(Path(sys.executable).with_name("nvflare")), "poc", *args]
        try:
            proc = subprocess.run(
                cmd, env=self.env(), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired:
            raise PocError(f"`nvflare poc {' '.join(args)}` did not finish within {timeout:.0f} s") from None
        if proc.returncode != 0:
            last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
            raise PocError(f"`nvflare poc {' '.join(args)}` failed: {last}")
        return proc.stdout

    @property
    def kits(self) -> Path:
        """The folder of the startup kits (the newest ``prod_NN``)."""
        found = sorted(self.workspace.glob("*/prod_*"), key=lambda p: int(p.name.split("_")[1]))
        if not found:
            raise PocError(f"no POC at {self.workspace}: run `flamby-flare poc up` first")
        return found[-1]

    def sites(self) -> list[str]:
        return sorted((p.name for p in self.kits.glob("site-*")), key=lambda s: int(s.split("-")[1]))

    def prepare(self, n_sites: int, heartbeat_timeout: int = 60, he: bool = False) -> None:
        """Provision ``site-1 .. site-N``. A site silent for ``heartbeat_timeout`` s is deemed gone (NVFlare's
        default, 600 s, would hold a finished job that long waiting for a lost site to report). ``he``: with
        NVFlare's ``HEBuilder`` (``-he``): the sites' kits get ``client_context.tenseal``, the server's
        ``server_context.tenseal``, for jobs with homomorphic encryption (``flamby_flare.homomorphic``)."""
        if n_sites < 1:
            raise PocError(f"--sites must be >= 1, got {n_sites}")
        if heartbeat_timeout < 30:  # sites send one every 10 s: below 3 of them, live sites get dropped
            raise PocError(
                f"--heartbeat-timeout must be >= 30 s (sites send a heartbeat every 10 s), got {heartbeat_timeout}"
            )
        if he:
            from flamby_flare.homomorphic import tenseal_module

            tenseal_module()  # NVFlare's HEBuilder imports it: the missing extra named in one line
        self._nvflare("prepare", "-c", *[site_name(c) for c in range(n_sites)], "--force", *(["-he"] if he else []))
        config_path = self.kits / "server" / "startup" / "fed_server.json"
        config = json.loads(config_path.read_text())
        config["servers"][0]["heart_beat_timeout"] = int(heartbeat_timeout)  # NVFlare fails on a float
        config_path.write_text(json.dumps(config, indent=2) + "\n")
        from flamby_flare.site_policy import admit_project_classes

        for participant in ["server", *self.sites()]:  # jobs written without custom code: the kits admit ours
            admit_project_classes(self.kits / participant / "local")
        self.sign_kits()

    def sign_kits(self) -> None:
        """Sign again the kits NVFlare signed at provisioning (an HE POC's: ``startup/`` and ``local/``, which
        hold the TenSEAL context), after this module's edits to them, with the POC's own root key (in
        ``<project>/state/cert.json``) and NVFlare's ``sign_folders``, as its ``SignatureBuilder`` did.
        Unsigned kits (the plain POC's, whose trust anchor is mTLS) stay unsigned."""
        signed = [p for p in self.kits.iterdir() if (p / "startup" / "signature.json").is_file()]
        if not signed:
            return
        from cryptography.hazmat.primitives import serialization
        from nvflare.lighter.utils import sign_folders

        state = json.loads((self.kits.parent / "state" / "cert.json").read_text())
        key = serialization.load_pem_private_key(state["root_pri_key"].encode(), password=None)
        for participant in signed:
            for folder in ("startup", "local"):
                sign_folders(str(participant / folder), key, signature_file="signature.json")

    def provision_data(self, datasets: list[str], mirror: str | None, log: Callable[[str], None] = print) -> None:
        """Give each site a data root with only its own center's files of ``datasets`` and name it in the
        site's ``local/flamby_flare.json``."""
        from flamby_flare.datasets import get_dataset
        from flamby_flare.download import download

        for site in self.sites():
            center = int(site.split("-")[1]) - 1
            root = self.workspace / "data" / site
            for name in datasets:
                module = get_dataset(name)
                if center < module.NUM_CLIENTS:
                    download(module.SOURCE, data_root=root, mirror=mirror, centers=[center], log=lambda _: None)
            config = {"data_root": str(root), "state_dir": str(self.workspace / "state" / site)}
            (self.kits / site / "local" / SITE_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
            log(f"{site}: {', '.join(datasets)} center {center} -> {root}")
        self.sign_kits()

    def ports(self) -> list[int]:
        """The server's ports (FL and admin) from the POC's project file."""
        text = (self.workspace / "project.yml").read_text() if (self.workspace / "project.yml").is_file() else ""
        fl = re.search(r"fed_learn_port:\s*(\d+)", text)
        admin = re.search(r"admin_port:\s*(\d+)", text)
        fl_port = int(fl.group(1)) if fl else 8002
        return sorted({fl_port, int(admin.group(1)) if admin else fl_port + 1})

    def start(self, timeout: float = 120) -> None:
        """Start server and sites; on failure nothing is left running."""
        for port in self.ports():
            with socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
                try:
                    sock.bind(("0.0.0.0", port))
                except OSError:
                    raise PocError(
                        f"port {port} is in use (another POC or NVFlare server?); stop it first, e.g. "
                        "`flamby-flare poc down --workspace <its workspace>`"
                    ) from None
        # NVFlare's own readiness wait logs the admin in with a 1 s connection timeout, which a loaded
        # machine misses again and again: start without it and wait here, through the admin API
        try:
            self._nvflare("start", "--no-wait", timeout=timeout)
            self.wait_ready(self.sites(), timeout)
        except PocError:
            self.stop(grace=10)
            raise

    def start_participant(self, name: str, timeout: float = 120) -> None:
        """(Re)start one site, e.g. after a crash, and wait until the server can reach it."""
        since = time.time()
        self._nvflare("start", "-p", name, "--no-wait", timeout=timeout)
        self.wait_ready([name], timeout, since=since)

    def wait_ready(self, sites: list[str], timeout: float = 60, since: float = 0.0) -> None:
        """Wait until the server reaches every site in ``sites`` (registered after ``since``) and none is
        still busy with a job."""
        deadline = time.monotonic() + timeout
        while True:  # the server may still be starting
            try:
                session = self.session()
                break
            except PocError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)
        try:
            while time.monotonic() < deadline:
                try:
                    seen = {c.name: c.last_connect_time or 0 for c in session.get_system_info().client_info}
                    status = {
                        s["client_name"]: s.get("status")
                        for s in session.check_status("client", sites).get("client_status", [])
                    }
                except Exception:  # noqa: BLE001 - the admin link may drop while a site re-registers
                    seen, status = {}, {}
                if all(seen.get(s, 0) >= since and status.get(s) == "no_jobs" for s in sites):
                    return
                time.sleep(0.5)
        finally:
            session.close()
        raise PocError(f"{', '.join(sites)} not ready within {timeout:.0f} s; see {self.kits}/<site>/log.txt")

    def processes(self, *parts: str) -> list[int]:
        """PIDs of the processes started from this POC's kits (whose command line also holds ``parts``)."""
        marker = f"{self.workspace}/"
        pids = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace") + " "
            except OSError:
                continue
            if marker in cmdline and all(part in cmdline for part in parts):
                pids.append(int(proc.name))
        return pids

    def kill(self, *parts: str, any_of: tuple[str, ...] = ("",)) -> list[int]:
        """SIGKILL the POC processes whose command line holds ``parts`` and one of ``any_of``, e.g.
        ``kill(job_id, "runner_process")`` for the server's job process."""
        pids: set[int] = set()
        for sig in (signal.SIGSTOP, signal.SIGKILL):  # freeze first: no process may report or restart another
            for alternative in any_of:
                pids.update(self.processes(*parts, alternative))
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        return sorted(pids)

    def stop(self, grace: float = 30) -> None:
        """Stop server and sites; SIGKILL whatever is still running after ``grace`` seconds."""
        try:
            if self.workspace.exists():
                self._nvflare("stop", timeout=grace + 30)
        except PocError:
            pass
        deadline = time.monotonic() + grace
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.5)
        for _ in range(5):  # a start script may relaunch its client while we kill: until none is left
            if not self.kill():
                break
            time.sleep(0.2)

    def kill_site(self, site: str) -> list[int]:
        """SIGKILL every process of ``site`` (start script, client and job process), as a machine loss."""
        kit = self.kits / site
        return self.kill(any_of=(f"{kit}/", f"{kit} "))

    # ---- jobs -----------------------------------------------------------------------------------
    def session(self):
        from nvflare.fuel.flare_api.flare_api import new_secure_session

        try:
            return new_secure_session(ADMIN, str(self.kits / ADMIN), timeout=30)
        except Exception as exc:  # noqa: BLE001 - NoConnection and friends: one line for the user
            raise PocError(
                f"cannot reach the POC server of {self.workspace} ({exc}); is it up? `flamby-flare poc up`"
            ) from None

    def run_job(
        self,
        job: str | os.PathLike,
        timeout: float = 1800,
        out: str | os.PathLike | None = None,
        progress: Callable[[str], None] | None = None,
        on_submit: Callable[[str], None] | None = None,
    ) -> JobOutcome:
        """Submit ``job``, wait until it ends (aborting it after ``timeout`` s), download its result."""
        job = Path(job)
        if not (job / "meta.json").is_file():
            raise PocError(f"{job} is not an NVFlare job folder (no meta.json)")
        session = self.session()
        try:
            start = time.monotonic()
            with tempfile.TemporaryDirectory() as tmp:  # NVFlare signs the folder it submits: sign a copy
                copy = shutil.copytree(job, Path(tmp) / job.resolve().name)
                job_id = session.submit_job(str(copy))
            if on_submit:
                on_submit(job_id)
            status = "SUBMITTED"
            while True:
                status = session.get_job_meta(job_id).get("status", "?")
                if progress:
                    progress(self._progress_line(job_id, status, time.monotonic() - start))
                if status.startswith("FINISHED") or status in ("FAILED_TO_RUN", "ABANDONED"):
                    break
                if time.monotonic() - start > timeout:
                    session.abort_job(job_id)
                    status = f"ABORTED after the {timeout:.0f} s timeout"
                    break
                time.sleep(0.5)
            seconds = time.monotonic() - start
            result = None
            try:
                if out is not None:
                    Path(out).mkdir(parents=True, exist_ok=True)
                result = Path(session.download_job_result(job_id, str(out) if out is not None else None))
            except Exception:  # noqa: BLE001 - a failed job may have nothing to download
                result = None
        finally:
            session.close()
        outcome = JobOutcome(job_id, status, result, seconds)
        if status != "FINISHED:COMPLETED":
            outcome.reason = self.failure_reason(job_id, result)
        return outcome

    def _progress_line(self, job_id: str, status: str, elapsed: float) -> str:
        line = f"job {job_id[:8]} {status.lower()} {elapsed:5.0f} s"
        log = self.kits / "server" / job_id / "log.txt"
        if status == "RUNNING" and log.is_file():
            rounds = _ROUND.findall(log.read_text(errors="replace")[-20000:])
            if rounds:
                line += f"  round {rounds[-1][0]}/{rounds[-1][1]}"
        return line

    def failure_reason(self, job_id: str, result: Path | None) -> str:
        """The first error line a flamby-flare component logged for the job (server, then sites), else
        NVFlare's own reason for failing it; the controller's "stopped before its end" (the job was aborted
        under it) only when NVFlare gives no reason either."""
        logs = [result / "workspace" / "log.txt"] if result else []
        logs += [self.kits / "server" / job_id / "log.txt"]
        logs += [self.kits / site / job_id / "log.txt" for site in self.sites()]
        aborted = None
        for log in logs:
            if not log.is_file():
                continue
            for line in log.read_text(errors="replace").splitlines():
                match = _FAILURE.search(line)
                if match and match.group(1).strip().startswith(RUN_STOPPED_EARLY):
                    aborted = aborted or match.group(1).strip()
                elif match:
                    return match.group(1).strip()
        server_log = self.kits / "server" / "log.txt"
        for line in server_log.read_text(errors="replace").splitlines() if server_log.is_file() else []:
            match = _SITE_FAILURE.search(line)
            if match and match.group(1) == job_id:
                return (
                    f"{match.group(2)}'s job process ended ({match.group(3)}), so NVFlare failed the job; "
                    "once the site is back, submit the job again with resume=true to continue it"
                )
            match = _NVFLARE_FAILURE.search(line)
            if match and match.group(1) == job_id:
                return f"NVFlare: {match.group(2)}"
        return aborted or "no error line found; see the job's logs with `nvflare job logs " + job_id + "`"

"""Production across machines: the server, four hospitals and the admin from `nvflare provision` startup
kits (``deploy/fed_heart_disease_project.yml``), each in its own network namespace (``tests/netns.py``), so
their traffic crosses real links with mutual TLS. The hospitals forbid jobs that bring code
(``flamby-flare site-policy --forbid-custom-code``): they refuse the committed job, and its variant without
custom code, submitted and signed by the admin, gives the simulator's result bit for bit; an admin of another provisioning and a site presenting another
site's certificate are refused; a hospital whose link is cut mid-run is dropped within 30 s and the result
records it. Needs root (network namespaces); the tests run in file order (the last one cuts a link)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flamby_flare.jobs import job_files, write_files
from flamby_flare.poc import Poc
from flamby_flare.site_policy import admit_project_classes, forbid_custom_code
from tests import golden, netns
from tests.conftest import REPO
from tests.simulator import pinned

pytestmark = [pytest.mark.simulator, pytest.mark.timeout(900), pytest.mark.random_order(disabled=True)]

PROJECT = REPO / "deploy" / "fed_heart_disease_project.yml"
SERVER, ADMIN = "server.example.org", "admin@example.org"
SITES = ["site-1", "site-2", "site-3", "site-4"]
ADMIN_SCRIPT = str(REPO / "tests" / "production_admin.py")


def _provision(workspace: Path) -> Path:
    workspace.mkdir(parents=True)
    proc = subprocess.run(
        [
            str(Path(sys.executable).with_name("nvflare")),
            "provision",
            "-p",
            str(PROJECT),
            "-w",
            str(workspace),
            "--force",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=workspace,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return workspace / "fed_heart_disease" / "prod_00"


def _wait_for(folder: Path, pattern: str, text: str, timeout: float) -> float:
    """Seconds until ``text`` appears in a file ``folder.glob(pattern)`` finds; fails after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if any(text in f.read_text(errors="replace") for f in folder.glob(pattern) if f.is_file()):
            return time.monotonic() - start
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not in {folder}/{pattern} within {timeout:.0f} s")


class Federation:
    def __init__(self, root: Path, mirror: Path):
        self.root = root
        self.kits = _provision(root / "provision")
        self.foreign_kits = _provision(root / "foreign")  # the same project provisioned again: another root CA
        for participant in [SERVER, *SITES]:
            admit_project_classes(self.kits / participant / "local")
        for site in SITES:  # hospitals that run no code a job brings: only what their class allow-list admits
            forbid_custom_code(self.kits / site / "local")
        Poc(root / "provision").provision_data(["fed_heart_disease"], str(mirror), log=lambda _: None)
        config_path = self.kits / SERVER / "startup" / "fed_server.json"
        config = json.loads(config_path.read_text())
        config["servers"][0]["heart_beat_timeout"] = 60  # a lost site's client is let go after 60 s, not 600
        config_path.write_text(json.dumps(config, indent=2) + "\n")
        self.env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "OMP_NUM_THREADS": "1",
            "FLAMBY_FLARE_STATE": str(root / "state"),
        }
        self.env.pop("FLAMBY_FLARE_DATA", None)  # each site reads only its own kit's data root
        self.net = netns.Network(f"ff{os.getpid() % 100000}", SERVER, [*SITES, ADMIN]).up()
        self.server = self.kits / SERVER

    def start(self, participant: str, kit: Path) -> subprocess.Popen:
        return self.net.start(
            None if participant == SERVER else participant,
            ["bash", str(kit / "startup" / "sub_start.sh"), "--once"],
            self.root / f"{participant}.{kit.parent.name}.out",
            self.env,
        )

    def admin(self, *args: str, kit: Path | None = None, timeout: float = 600) -> tuple[int, dict]:
        proc = self.net.run(
            ADMIN, [sys.executable, ADMIN_SCRIPT, ADMIN, str(kit or self.kits / ADMIN), *args], self.env, timeout
        )
        lines = proc.stdout.strip().splitlines()
        return proc.returncode, json.loads(lines[-1]) if lines else {"error": proc.stderr[-2000:]}


@pytest.fixture(scope="module")
def federation(tmp_path_factory, mirror):
    reason = netns.available()
    if reason:
        pytest.skip(f"production across namespaces {reason}")
    fed = Federation(tmp_path_factory.mktemp("production"), mirror)
    try:
        fed.start(SERVER, fed.kits / SERVER)
        _wait_for(fed.server, "log.txt", "Server started", 120)
        # site-4's namespace first presents site-1's certificate under site-4's name: NVFlare must refuse it
        impostor = fed.root / "impostor" / "site-4"
        shutil.copytree(fed.kits / "site-4", impostor)
        for name in ("client.crt", "client.key"):
            shutil.copy(fed.kits / "site-1" / "startup" / name, impostor / "startup" / name)
        fake = fed.start("site-4", impostor)
        fed.impostor_refused_after = _wait_for(
            fed.server, "log.txt", "authenticated as 'site-1' but claimed endpoint", 120
        )
        fed.net.stop(fake)
        fed.clients_before_real_site_4 = fed.admin("clients", "0", "1")[1]["clients"]
        for site in SITES:
            fed.start(site, fed.kits / site)
        code, reply = fed.admin("clients", "4", "120")
        assert code == 0 and reply["clients"] == SITES, reply
        yield fed
    finally:
        fed.net.down()


def test_hospitals_that_forbid_custom_code_run_the_job_without_it(federation):
    """The committed job brings NVFlare's mark of custom code: every hospital refuses it and nothing runs. The
    same job written without it (``--no-custom-code``), admin-signed over mutual TLS, is admitted class by class
    and gives the simulator's result (tests/golden.json), bit for bit."""
    assert (
        json.loads((federation.kits / "site-1" / "startup" / "fed_client.json").read_text())["client"][
            "connection_security"
        ]
        == "mtls"
    )
    code, reply = federation.admin(
        "run", str(REPO / "jobs" / "fed_heart_disease_fedavg"), str(federation.root / "byoc"), "120"
    )
    assert code == 0 and reply["status"] == "FINISHED:FAILED_TO_RUN", reply
    assert all(
        f"{site}: NVFLARE_ERROR: BYOC not permitted" in (federation.server / "log.txt").read_text() for site in SITES
    )
    job = write_files(federation.root / "job", job_files("fed_heart_disease", "fedavg", custom_code=False))
    code, reply = federation.admin("run", str(job), str(federation.root / "out1"), "600")
    assert code == 0 and reply["status"] == "FINISHED:COMPLETED", reply
    golden.check("main_job/heart_fedavg_seed42", pinned(Path(reply["result"]) / "workspace"))


def test_a_site_presenting_another_sites_certificate_is_refused(federation):
    assert federation.impostor_refused_after < 60
    assert "site-4" not in federation.clients_before_real_site_4, federation.clients_before_real_site_4


def test_an_admin_of_another_provisioning_is_refused(federation):
    jobs_before = federation.admin("jobs")[1]["jobs"]
    code, reply = federation.admin(
        "run",
        str(REPO / "jobs" / "fed_heart_disease_fedavg"),
        str(federation.root / "out2"),
        "60",
        kit=federation.foreign_kits / ADMIN,
    )
    assert code == 1 and "error" in reply and "job_id" not in reply, reply
    assert federation.admin("jobs")[1]["jobs"] == jobs_before


def test_a_hospital_whose_link_is_cut_is_dropped_within_30_s(federation):
    job = write_files(
        federation.root / "cut_job",
        job_files("fed_heart_disease", "fedavg", num_rounds=30, min_clients=3, custom_code=False),
    )
    out = federation.root / "cut.out"
    run = federation.net.start(
        ADMIN,
        [
            sys.executable,
            ADMIN_SCRIPT,
            ADMIN,
            str(federation.kits / ADMIN),
            "run",
            str(job),
            str(federation.root / "out3"),
            "600",
        ],
        out,
        federation.env,
    )
    _wait_for(federation.server, "*-*-*-*-*/log.txt", "round 3/30", 300)
    federation.net.cut("site-3")
    noticed = _wait_for(federation.server, "*-*-*-*-*/log.txt", "no valid result from site-3", 120)
    assert run.wait(timeout=600) == 0, out.read_text()[-3000:]
    reply = json.loads(out.read_text().strip().splitlines()[-1])
    # NVFlare ends the job once the lost client's heartbeat times out (60 s here) and may then mark it
    # FINISHED:ABNORMAL; the run itself finished: its result is complete and records the drop
    assert reply["status"].startswith("FINISHED:"), reply
    summary = json.loads((Path(reply["result"]) / "workspace" / "summary.json").read_text())
    assert noticed < 45, noticed  # 30 s task timeout (the floor) plus the round under way
    assert list(summary["dropped_sites"]) == ["site-3"] and len(summary["history"]) == 30
    assert math.isnan(summary["per_site"]["site-3"])
    assert all(math.isfinite(summary["per_site"][s]) for s in ("site-1", "site-2", "site-4"))

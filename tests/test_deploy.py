"""The production project file provisions the four Fed-Heart-Disease hospitals with NVFlare's own tools."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from flamby_flare.cli import main
from flamby_flare.jobs import component_classes
from flamby_flare.site_policy import NVFLARE_ADDED
from tests.conftest import REPO


def test_project_file_provisions_four_hospital_kits_with_mutual_tls(tmp_path):
    nvflare = Path(sys.executable).with_name("nvflare")
    proc = subprocess.run(
        [
            str(nvflare),
            "provision",
            "-p",
            str(REPO / "deploy" / "fed_heart_disease_project.yml"),
            "-w",
            str(tmp_path),
            "--force",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    kits = tmp_path / "fed_heart_disease" / "prod_00"
    _check_a_hospital_can_forbid_custom_code(kits / "site-1")
    (tmp_path / "bare").mkdir()  # no provisioned policy to start from: one line naming it
    assert main(["site-policy", str(tmp_path / "bare"), "--forbid-custom-code"]) == 1
    assert sorted(p.name for p in kits.iterdir()) == [
        "admin@example.org",
        "server.example.org",
        "site-1",
        "site-2",
        "site-3",
        "site-4",
    ]
    for site in ("site-1", "site-2", "site-3", "site-4"):
        startup = kits / site / "startup"
        assert {"client.crt", "client.key", "rootCA.pem", "start.sh"} <= {p.name for p in startup.iterdir()}
        client = json.loads((startup / "fed_client.json").read_text())["client"]
        assert client["fqsn"] == site and client["connection_security"] == "mtls"


def _check_a_hospital_can_forbid_custom_code(kit: Path) -> None:
    """``site-policy --forbid-custom-code``: the kit's own authorization policy with NVFlare's ``byoc`` right none
    for every role and every other right as it was; its allow-list admits this project's classes."""
    default = json.loads((kit / "local" / "authorization.json.default").read_text())["permissions"]
    assert main(["site-policy", str(kit), "--forbid-custom-code"]) == 0
    policy = json.loads((kit / "local" / "authorization.json").read_text())["permissions"]
    assert set(policy) == set(default) and all(rights["byoc"] == "none" for rights in policy.values())
    for role, rights in default.items():
        expected = rights if isinstance(rights, dict) else {r: rights for r in policy[role]}
        assert {r: v for r, v in policy[role].items() if r != "byoc"} == {
            r: v for r, v in expected.items() if r != "byoc"
        }
    allowed = json.loads((kit / "local" / "resources.json").read_text())["class_allow_list"]
    # exactly the project's classes and the log streamer NVFlare adds to a job, not NVFlare's built-in default list
    assert allowed == component_classes() + list(NVFLARE_ADDED)

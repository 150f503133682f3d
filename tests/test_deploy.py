"""The production project file provisions the four Fed-Heart-Disease hospitals with NVFlare's own tools."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_project_file_provisions_four_hospital_kits_with_mutual_tls(tmp_path):
    nvflare = Path(sys.executable).with_name("nvflare")
    proc = subprocess.run(
        [str(nvflare), "provision", "-p", str(REPO / "deploy" / "fed_heart_disease_project.yml"), "-w", str(tmp_path), "--force"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    kits = tmp_path / "fed_heart_disease" / "prod_00"
    assert sorted(p.name for p in kits.iterdir()) == ["admin@example.org", "server.example.org", "site-1", "site-2", "site-3", "site-4"]
    for site in ("site-1", "site-2", "site-3", "site-4"):
        startup = kits / site / "startup"
        assert {"client.crt", "client.key", "rootCA.pem", "start.sh"} <= {p.name for p in startup.iterdir()}
        client = json.loads((startup / "fed_client.json").read_text())["client"]
        assert client["fqsn"] == site and client["connection_security"] == "mtls"

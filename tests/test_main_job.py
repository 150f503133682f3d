"""The README's promise: the main job (``jobs/fed_heart_disease_fedavg``, seed 42, the committed folder run
with NVFlare's own command exactly as a user types it) prints the README's table, and its per-site accuracies
are FLamby's published seed-42 FedAvg100 values, exactly (logistic regression from FLamby's initial model is
convex, so the batch order does not change the accuracies). Also pinned in ``tests/golden.json``. An image
job typed the same way without its data stops at once, its first error line naming the command to run."""

import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

from flamby_flare.cli import main
from flamby_flare.reference import load_reference
from tests import golden
from tests.conftest import REPO, reference_dir
from tests.simulator import forked_sites, pinned, read_streams, run_dir, run_simulator

pytestmark = pytest.mark.simulator
_ROW = re.compile(r"^(site-\d)\s+\w+\s+(\d+)\s+([0-9.]+)$")


def _readme_table() -> tuple[dict[str, tuple[int, float]], float]:
    """The per-site rows and the mean of the README's example table."""
    text = (REPO / "README.md").read_text()
    block = text.split("The main command ends with a table like this (seed 42):", 1)[1].split("```")[1]
    rows = {
        m.group(1): (int(m.group(2)), float(m.group(3)))
        for line in block.splitlines()
        if (m := _ROW.match(line.strip()))
    }
    mean = float(re.search(r"mean over sites \(unweighted\)\s+([0-9.]+)", block).group(1))
    return rows, mean


def _readme_fairness() -> str:
    """The fairness line of the README's example table."""
    text = (REPO / "README.md").read_text()
    block = text.split("The main command ends with a table like this (seed 42):", 1)[1].split("```")[1]
    return next(line for line in block.splitlines() if line.startswith("fairness: "))


def _as_typed(tmp_path: Path, monkeypatch, **env: str) -> tuple[Path, dict]:
    """A folder outside the repository to type the command in, and a user's environment: the installed
    ``nvflare`` on PATH, a clean HOME (no NVFlare config, no data cache, no run state), nothing else of ours."""
    for name in [n for n in os.environ if n.startswith("FLAMBY_FLARE_")]:
        monkeypatch.delenv(name)
    (tmp_path / "cwd").mkdir()
    (tmp_path / "home").mkdir()
    return tmp_path / "cwd", {
        "HOME": str(tmp_path / "home"),
        **env,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }


def test_the_main_job_gives_the_readme_table_and_flambys_values(tmp_path, data_root, capsys, monkeypatch):
    """``nvflare simulator <repo>/jobs/fed_heart_disease_fedavg`` typed in another folder: no workspace, no
    ``-t``, nothing prepared (NVFlare puts its workspace in ``./simulator_workspace``)."""
    cwd, env = _as_typed(tmp_path, monkeypatch, FLAMBY_FLARE_DATA=str(data_root))
    ws = cwd / "simulator_workspace"
    proc = run_simulator(REPO / "jobs" / "fed_heart_disease_fedavg", ws, None, env, cwd=cwd)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert log.count("for one live process per site run it with -t 4") == 1  # said once, how to be faster
    assert forked_sites(ws) == {f"site-{i}": True for i in range(1, 5)}  # the simulator's fast path
    out = run_dir(ws)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seed"] == 42 and summary["rounds"] == 15 and summary["method"] == "FedAvg100"

    rows, mean = _readme_table()
    assert {s: (summary["n_test"][s], round(v, 4)) for s, v in summary["per_site"].items()} == rows
    assert round(summary["mean"], 4) == mean
    assert (
        summary["fairness"]["worst_site"] == "site-4" and summary["fairness"]["worst"] == summary["per_site"]["site-4"]
    )
    assert _readme_fairness() in log  # the controller's table in the log
    ref = load_reference(reference_dir(), "fed_heart_disease")
    flamby = ref[(ref.Method == "FedAvg100") & (ref.seed == 42)].set_index("Test")["Metric"]
    assert list(summary["per_site"].values()) == [flamby[f"client_test_{c}"] for c in range(4)]

    assert main(["results", str(ws)]) == 0  # what the main script prints last
    printed = capsys.readouterr().out
    for site, (n, value) in rows.items():
        assert re.search(rf"{site}\s+\w+\s+{n}\s+{value:.4f}", printed)
    assert _readme_fairness() in printed
    assert f"metrics per round: tensorboard --logdir {out / 'tb_events'}" in printed
    golden.check("main_job/heart_fedavg_seed42", pinned(out))

    # The metric streams, read back from the TensorBoard event files: the history and results, as float32.
    streams = read_streams(out)
    assert list(streams) == ["server", "site-1", "site-2", "site-3", "site-4"]
    history = summary["history"]
    f32 = lambda values: pytest.approx(values, rel=1e-6)  # noqa: E731
    assert streams["server"]["train_loss"] == f32({r["round"]: r["train_loss"] for r in history})
    assert list(streams["server"]["round_seconds"]) == list(range(1, 16))
    assert streams["server"]["test_accuracy_mean"] == f32({15: summary["mean"]})
    for site in rows:
        assert streams[site]["train_loss"] == f32({r["round"]: r["per_site"][site] for r in history})
        assert streams[site]["test_accuracy"] == f32({15: summary["per_site"][site]})


def test_an_image_job_without_its_data_stops_at_once_naming_the_command(tmp_path, monkeypatch):
    """``nvflare simulator jobs/fed_camelyon16_fedavg`` with nothing downloaded: non-zero within 2 minutes, and
    the first error line the user sees is the command to run, not a traceback."""
    cwd, env = _as_typed(tmp_path, monkeypatch)
    start = time.monotonic()
    proc = run_simulator(
        REPO / "jobs" / "fed_camelyon16_fedavg", cwd / "simulator_workspace", None, env, cwd=cwd, timeout=120
    )
    assert proc.returncode != 0 and time.monotonic() - start < 120
    first = next(line for line in (proc.stdout + proc.stderr).splitlines() if "ERROR" in line)
    missing = tmp_path / "home" / ".cache" / "flamby_flare" / "fed_camelyon16" / "metadata.csv"
    assert first.endswith(
        f"Fed-Camelyon16 not found: {missing} is missing; run `flamby-flare download fed_camelyon16`"
    ), first


def test_the_readmes_first_usage_line_is_nvflares_own_command():
    block = (REPO / "README.md").read_text().split("## Usage", 1)[1].split("```bash", 1)[1].split("```")[0]
    commands = [line for line in block.strip().splitlines() if not line.startswith("source ")]
    assert commands[0].startswith("nvflare simulator jobs/fed_heart_disease_fedavg")

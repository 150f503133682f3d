"""NVFlare POC mode end to end: a real server and four real site processes, each holding only its own
center's data; the committed job gives its recorded numbers (the simulator's, ``tests/golden.json``); faults
(a crashed server job, a lost site, a site without data) end as documented, within bounded time, and nothing
is left running. Every test starts from the same POC: all four sites up and idle (``_full``), whatever
the tests before it did, so they pass alone and in any order. Before that POC, NVFlare's own POC flow as its
docs teach it (``nvflare poc prepare``, ``start``, ``job submit``; NVFlare's ``PocEnv`` for a recipe) runs the
committed job and a recipe, nothing of ours prepared (``nvflare_poc``)."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from controllers.checkpoint import load_checkpoint
from flamby_flare.cli import main
from flamby_flare.jobs import job_files, write_files
from flamby_flare.paths import SITE_CONFIG
from flamby_flare.poc import Poc, PocError
from tests import golden
from tests.conftest import REPO, budget
from tests.simulator import pinned, run_dir, run_simulator

pytestmark = [pytest.mark.simulator, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def nvflare_poc(tmp_path_factory, data_root):
    """NVFlare's POC flow typed as a user types it, with a clean HOME and every site reading its own center from
    the data root: the committed job (``nvflare job submit``, ``wait``, ``download``), then a recipe in NVFlare's
    own ``PocEnv`` (which provisions and starts a POC of its own). Returns both results' workspaces. It runs
    before the module's POC (``poc`` needs it): both use NVFlare's POC ports."""
    from nvflare.recipe import PocEnv as NVFlarePocEnv

    from flamby_flare.recipes import FlambyRecipe
    from tests.test_recipes import SHORT

    root = tmp_path_factory.mktemp("nvflare_poc")
    (root / "home").mkdir()
    user = {
        "HOME": str(root / "home"),
        "FLAMBY_FLARE_DATA": str(data_root),
        "FLAMBY_FLARE_STATE": str(root / "state"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    env = {k: v for k, v in os.environ.items() if k != "NVFLARE_POC_WORKSPACE"} | user

    def nvflare(*args: str, timeout: float = 300, check: bool = True) -> str:
        proc = subprocess.run(
            ["nvflare", *args],
            env=env,
            cwd=root,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        assert proc.returncode == 0 or not check, (
            f"nvflare {' '.join(args)}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
        return proc.stdout + proc.stderr

    def stop() -> None:
        """``nvflare poc stop``, whose own wait (30 s) a loaded machine can outlast: then the POC's processes get
        two minutes more to end, and what is left is killed (the next POC needs the ports)."""
        nvflare("poc", "stop", check=False)
        deadline = time.monotonic() + 120
        while _pids_of(str(root / "poc")) and time.monotonic() < deadline:
            time.sleep(1)
        for pid in _pids_of(str(root / "poc")):
            os.kill(pid, signal.SIGKILL)

    with budget(900, "NVFlare's own POC flow"), pytest.MonkeyPatch.context() as mp:
        nvflare("poc", "config", "-pw", str(root / "poc"))  # this test's own POC, not the machine's /tmp/nvflare/poc
        nvflare("poc", "prepare", "-n", "4")
        try:
            nvflare("poc", "start", "--timeout", "180")
            job_id = re.search(
                r"job_id: (\S+)", nvflare("job", "submit", "-j", str(REPO / "jobs" / "fed_heart_disease_fedavg"))
            ).group(1)
            nvflare("job", "wait", job_id, "--timeout", "300")
            nvflare("job", "download", job_id, "-o", str(root / "result"))
        finally:
            stop()
        for name, value in env.items():
            mp.setenv(name, value)
        try:
            run = FlambyRecipe(**SHORT).execute(NVFlarePocEnv(num_clients=4))  # provisions and starts a POC anew
            recipe = run.get_result(timeout=300, clean_up=False)  # and stops it
        finally:
            stop()
    return {
        "job": root / "result" / job_id / "workspace",
        "recipe": Path(recipe) / "workspace",
        "status": run.get_status(),
    }


def _pids_of(text: str) -> list[int]:
    """The processes whose command line holds ``text``."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace"
            ):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def test_nvflares_own_poc_flow_runs_the_committed_job_and_a_recipe(nvflare_poc):
    """``nvflare poc prepare -n 4``, ``nvflare poc start``, ``nvflare job submit -j jobs/fed_heart_disease_fedavg``
    give the simulator's recorded result; ``FlambyRecipe(...).execute(nvflare.recipe.PocEnv(num_clients=4))``
    gives the same recipe's in ``SimEnv`` (tests/test_recipes.py)."""
    golden.check("main_job/heart_fedavg_seed42", pinned(nvflare_poc["job"]))
    assert nvflare_poc["status"] == "FINISHED:COMPLETED"
    golden.check("recipe/heart_fedavg_2rounds_seed3", pinned(nvflare_poc["recipe"]))


@pytest.fixture(scope="module")
def poc(tmp_path_factory, mirror, nvflare_poc):
    home = tmp_path_factory.mktemp("home")  # nvflare poc writes ~/.nvflare: keep the user's own untouched
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(home))
        mp.delenv("FLAMBY_FLARE_DATA", raising=False)  # the sites must use their own data roots
        mp.delenv("FLAMBY_FLARE_STATE", raising=False)  # run state in <workspace>/state, as `poc up` sets it
        poc = Poc(tmp_path_factory.mktemp("poc") / "ws")
        ws = ["--workspace", str(poc.workspace)]
        try:
            assert (
                main(["poc", "up", "--sites", "4", "--mirror", str(mirror), "--heartbeat-timeout", "30", "--he", *ws])
                == 0
            )
            yield poc
        finally:
            assert main(["poc", "down", *ws]) == 0
            assert poc.processes() == [], "POC processes left behind"


SITES = ["site-1", "site-2", "site-3", "site-4"]


def _full(poc: Poc) -> Poc:
    """All four sites up and idle: a site a previous test killed (or left disconnected) is restarted."""
    for site in SITES:
        if not poc.processes(f"{poc.kits / site} "):
            poc.start_participant(site)
    try:
        poc.wait_ready(SITES, timeout=30)
    except PocError:  # a site that lives but cannot serve (NVFlare 2.9 after a failed job): restart it
        for site in SITES:
            poc.kill_site(site)
            poc.start_participant(site)
        poc.wait_ready(SITES, timeout=60)
    shutil.rmtree(poc.workspace / "state" / "server", ignore_errors=True)  # a failed run leaves its checkpoint
    return poc


def _result(result_dir: Path):
    summary = json.loads((result_dir / "workspace" / "summary.json").read_text())
    return summary, torch.load(result_dir / "workspace" / "FL_global_model.pt", weights_only=True)


def _simulated(job: Path, tmp_path: Path, data_root: Path):
    proc = run_simulator(
        job,
        tmp_path / "sim",
        4,
        {"FLAMBY_FLARE_DATA": str(data_root), "FLAMBY_FLARE_STATE": str(tmp_path / "sim_state")},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = run_dir(tmp_path / "sim")
    return json.loads((out / "summary.json").read_text()), torch.load(out / "FL_global_model.pt", weights_only=True)


def _assert_same_run(a, b):
    (sa, ma), (sb, mb) = a, b
    assert sa["per_site"] == sb["per_site"]
    assert [h["train_loss"] for h in sa["history"]] == [h["train_loss"] for h in sb["history"]]
    for key, value in ma["model"].items():
        assert torch.equal(value, mb["model"][key]), key


def test_each_site_holds_only_its_own_center(poc):
    for k, name in enumerate(["cleveland", "hungarian", "switzerland", "va"], start=1):
        config = json.loads((poc.kits / f"site-{k}" / "local" / SITE_CONFIG).read_text())
        files = sorted(
            p.name for p in (Path(config["data_root"]) / "fed_heart_disease").iterdir() if not p.name.startswith(".")
        )
        assert files == [f"processed.{name}.data"]


def test_committed_job_in_poc_equals_the_simulator(poc, tmp_path):
    """The main job in POC gives the simulator's recorded result (tests/test_main_job.py records it)."""
    job = REPO / "jobs" / "fed_heart_disease_fedavg"
    outcome = _full(poc).run_job(job, timeout=300, out=tmp_path / "results")
    assert outcome.ok, f"{outcome.status}: {outcome.reason}"
    assert not list(job.rglob(".__nvfl_*")), "submitting must not sign the committed job folder"
    poc_run = _result(outcome.result_dir)
    assert poc_run[0]["seed"] == 42 and len(poc_run[0]["per_site"]) == 4
    golden.check("main_job/heart_fedavg_seed42", pinned(outcome.result_dir / "workspace"))


def test_secure_aggregation_in_poc_keeps_the_key_at_the_sites(poc, tmp_path):
    """``poc up --he`` provisions the key with NVFlare's HEBuilder: the sites' kits hold it, the server's only
    its public part; the committed HE job gives the plaintext main job's recorded result within CKKS
    precision, and the server's result holds only ciphertexts, which a site's key decrypts."""
    from flamby_flare.homomorphic import CLIENT_CONTEXT, SERVER_CONTEXT, decrypt_model
    from tests.test_homomorphic import CKKS

    assert sorted(p.name for p in (poc.kits / "server" / "startup").glob("*.tenseal")) == [SERVER_CONTEXT]
    for site in SITES:
        assert sorted(p.name for p in (poc.kits / site / "startup").glob("*.tenseal")) == [CLIENT_CONTEXT]
    outcome = _full(poc).run_job(REPO / "jobs" / "fed_heart_disease_fedavg_he", timeout=300, out=tmp_path / "results")
    assert outcome.ok, f"{outcome.status}: {outcome.reason}"
    out = outcome.result_dir / "workspace"
    saved = torch.load(out / "FL_global_model.pt", weights_only=True)
    assert {v.dtype for v in saved["model"].values()} == {torch.uint8}
    result = pinned(out)
    result["model"] = golden.fingerprint(
        decrypt_model(out / "FL_global_model.pt", poc.kits / "site-1" / "startup" / CLIENT_CONTEXT)
    )
    golden.check("main_job/heart_fedavg_seed42", result, tolerance=CKKS)


def test_a_recipe_runs_in_poc_env_through_nvflares_prod_env(poc, tmp_path):
    """``FlambyRecipe(...).execute(PocEnv(...))``: submitted, followed and downloaded by NVFlare's Flare API
    (``ProdEnv`` on the POC admin's kit), with the result the same recipe gives in ``SimEnv``."""
    from nvflare.recipe import ProdEnv

    from flamby_flare.recipes import FlambyRecipe, PocEnv
    from tests.test_recipes import SHORT

    env = PocEnv(poc_workspace=_full(poc).workspace)  # up already: nothing restarted
    assert isinstance(env, ProdEnv) and env.startup_kit_location == str(poc.kits / "admin@nvidia.com")
    run = FlambyRecipe(**SHORT).execute(env)
    result = run.get_result(timeout=300)
    assert result is not None and run.get_status() is not None
    (summary,) = Path(result).rglob("summary.json")
    golden.check("recipe/heart_fedavg_2rounds_seed3", pinned(summary.parent))


def test_site_without_data_refuses_the_job_naming_it(poc, tmp_path, capsys):
    """Through the CLI: the job fails at its first task, and `poc run` says why in one line."""
    _full(poc)
    config_path = poc.kits / "site-2" / "local" / SITE_CONFIG
    saved = config_path.read_text()
    config_path.write_text(json.dumps({"data_root": str(tmp_path / "nowhere")}))
    try:
        job = write_files(
            tmp_path / "job",
            job_files("fed_heart_disease", "fedavg", num_rounds=2, train_timeout=60, validate_timeout=60),
        )
        capsys.readouterr()
        code = main(
            [
                "poc",
                "run",
                str(job),
                "--workspace",
                str(poc.workspace),
                "--timeout",
                "180",
                "--out",
                str(tmp_path / "out"),
            ]
        )
    finally:
        config_path.write_text(saved)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert "FINISHED:EXECUTION_EXCEPTION" in err[0] and ": site-2: Fed-Heart-Disease not found: " in err[0]
    assert "processed.hungarian.data is missing" in err[0]


def _when_checkpoint(poc: Poc, rounds: int, action, timeout: float = 180):
    """Run ``action`` once the server's checkpoint has ``rounds`` completed rounds (in a thread)."""

    def watch():
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for path in (poc.workspace / "state" / "server").glob("**/checkpoint.pt"):
                try:
                    if load_checkpoint(path).rounds_done >= rounds:
                        action()
                        return
                except (EOFError, RuntimeError, OSError):
                    pass
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_crashed_server_job_resumes_bit_identical(poc, tmp_path, data_root):
    """SCAFFOLD (server control c, sites' c_i on disk): the server's job process is SIGKILLed after round 3,
    NVFlare ends the job; the same job submitted again resumes and ends equal to an uninterrupted run."""
    _full(poc)
    job = write_files(tmp_path / "fed_heart_disease_scaffold", job_files("fed_heart_disease", "scaffold", resume=True))
    job_id = []
    watcher = _when_checkpoint(poc, 3, lambda: poc.kill(job_id[0], "runner_process"))
    crashed = poc.run_job(job, timeout=300, on_submit=job_id.append)
    watcher.join(timeout=1)
    assert not crashed.ok, "the run finished before the crash: nothing was tested"
    path = next((poc.workspace / "state" / "server").glob("**/checkpoint.pt"))
    done = load_checkpoint(path).rounds_done
    assert 3 <= done < 15

    resumed = poc.run_job(job, timeout=300, out=tmp_path / "results")
    assert resumed.ok, f"{resumed.status}: {resumed.reason}"
    summary, model = _result(resumed.result_dir)
    assert summary["resumed_after_round"] == done
    _assert_same_run((summary, model), _simulated(job, tmp_path, data_root))
    golden.check("poc/heart_scaffold_seed42_resumed", pinned(resumed.result_dir / "workspace"))


SLOW_ROUNDS = 10


def _slow_job(tmp_path: Path, poc: Poc, **variant) -> Path:
    """Heart FedAvg with ``SLOW_ROUNDS`` rounds of 500 updates (a few seconds a round on a loaded machine: time to lose a
    site mid-run, little compute to compete for) and a 30 s train timeout (round 1 starts the sites' job
    processes, seconds on a loaded machine); on the full POC."""
    _full(poc)
    return write_files(
        tmp_path / "job",
        job_files(
            "fed_heart_disease",
            "fedavg",
            num_rounds=SLOW_ROUNDS,
            num_updates=500,
            train_timeout=30,
            validate_timeout=60,
            **variant,
        ),
    )


def test_lost_site_with_quorum_completes_without_it(poc, tmp_path):
    """min_clients=3: site-4's machine is lost after round 2; the run drops it and finishes with three."""
    job = _slow_job(tmp_path, poc, min_clients=3)
    watcher = _when_checkpoint(poc, 2, lambda: poc.kill_site("site-4"))
    outcome = poc.run_job(job, timeout=480, out=tmp_path / "results")  # 1 min alone; CI's load: minutes
    watcher.join(timeout=1)
    assert outcome.ok, f"{outcome.status}: {outcome.reason}"
    summary, _ = _result(outcome.result_dir)
    assert list(summary["dropped_sites"]) == ["site-4"] and summary["dropped_sites"]["site-4"] >= 3
    assert math.isnan(summary["per_site"]["site-4"])
    assert all(0 <= summary["per_site"][s] <= 1 for s in ("site-1", "site-2", "site-3"))
    assert len(summary["history"]) == SLOW_ROUNDS
    assert all(set(h["per_site"]) == {"site-1", "site-2", "site-3"} for h in summary["history"][-3:])


def test_lost_site_without_quorum_fails_within_the_timeout(poc, tmp_path):
    """min_clients=3: losing site-3 and site-4 after round 2 leaves two sites, so the run fails within
    the 30 s task timeout, naming them."""
    job = _slow_job(tmp_path, poc, min_clients=3)
    watcher = _when_checkpoint(poc, 2, lambda: (poc.kill_site("site-3"), poc.kill_site("site-4")))
    outcome = poc.run_job(job, timeout=240)
    watcher.join(timeout=1)
    assert not outcome.ok
    assert (
        "no valid result from site-3, site-4 within 30 s; 2 site(s) left, the run needs 3 (min_clients)"
        in outcome.reason
    )
    assert outcome.seconds < 120


def test_crashed_site_job_process_fails_the_job_at_once(poc, tmp_path):
    """Only site-2's job process dies (its NVFlare client lives and reports it): NVFlare fails the whole
    job at once, whatever min_clients is, and `run` says so and how to continue. (NVFlare 2.9 may leave
    other sites disconnected after failing a job this way: the next test's ``_full`` restarts them.)"""
    job_id = []
    job = _slow_job(tmp_path, poc, min_clients=2)
    watcher = _when_checkpoint(poc, 2, lambda: poc.kill(job_id[0], "worker_process", f"{poc.kits / 'site-2'} "))
    outcome = poc.run_job(job, timeout=240, on_submit=job_id.append)
    watcher.join(timeout=1)
    assert not outcome.ok and outcome.seconds < 120
    assert outcome.reason.startswith("site-2's job process ended (exception), so NVFlare failed the job"), (
        outcome.reason
    )
    assert "resume=true" in outcome.reason

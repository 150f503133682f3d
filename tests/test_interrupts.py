"""Ctrl-C on ``flamby-flare simulator`` stops everything it started within seconds (NVFlare's site workers run
in sessions of their own, out of the terminal's reach), says how to go on, and leaves what a resume needs.
(``flamby-flare benchmark`` mid-sweep: tests/test_benchmark.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flamby_flare.jobs import write_job
from flamby_flare.processes import descendants

pytestmark = pytest.mark.simulator


def _ctrl_c_once(cmd: list[str], env: dict, ready, tmp_path: Path) -> tuple[int, str, list[int], float]:
    """``cmd`` as a terminal runs it (its own process group); once ``ready()`` holds, the terminal's Ctrl-C
    (SIGINT to that group). Returns its exit code, stderr, every process it had started, and the seconds it
    took to exit after the Ctrl-C."""
    with open(tmp_path / "out.log", "w") as out, open(tmp_path / "err.log", "w") as err:
        proc = subprocess.Popen(
            cmd, env={**os.environ, "OMP_NUM_THREADS": "1", **env}, stdout=out, stderr=err, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 240
            while not ready() and time.monotonic() < deadline:
                assert proc.poll() is None, (tmp_path / "err.log").read_text()[-2000:]
                time.sleep(0.1)
            started = descendants(proc.pid)
            assert started, "nothing was started"
            os.killpg(proc.pid, signal.SIGINT)
            interrupted = time.monotonic()
            code = proc.wait(timeout=60)
            seconds = time.monotonic() - interrupted
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    time.sleep(0.5)  # orphans are reaped by init
    return code, (tmp_path / "err.log").read_text(), started, seconds


def alive(pids: list[int]) -> list[str]:
    """The command lines of those of ``pids`` still running."""
    out = []
    for pid in pids:
        try:
            state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.append((Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:120])
    return out


def test_ctrl_c_on_the_simulator_stops_every_process_and_says_how_to_resume(tmp_path, data_root):
    from controllers.checkpoint import load_checkpoint

    job = write_job("fed_heart_disease", "fedavg", tmp_path, num_rounds=200, num_updates=200)
    log = tmp_path / "ws" / "server" / "log.txt"
    code, err, started, seconds = _ctrl_c_once(
        [str(Path(sys.executable).with_name("flamby-flare")), "simulator", str(job), "-w", str(tmp_path / "ws")],
        {"FLAMBY_FLARE_DATA": str(data_root), "FLAMBY_FLARE_STATE": str(tmp_path / "state")},
        lambda: log.is_file() and "round 3/200" in log.read_text(errors="replace"),
        tmp_path,
    )
    assert code == 130 and seconds < 15, (code, seconds)
    assert err.strip().splitlines()[-1] == (
        "interrupted: the simulator and every site process it started are stopped. Its completed rounds are "
        'checkpointed: to continue, run the job again with "resume": true in its controller\'s args '
        "(`flamby-flare jobs --resume` writes it so)"
    )
    assert len(started) >= 6 and not alive(started)  # the simulator, its server, the forkserver, four site workers
    (checkpoint,) = (tmp_path / "state" / "server").glob("*/checkpoint.pt")
    assert load_checkpoint(checkpoint).rounds_done >= 2


def test_a_run_lost_to_nvflares_port_race_is_run_again(tmp_path, capfd):
    """Where users run (``flamby-flare simulator``, the benchmark's jobs, the recipes' ``SimEnv``): a run whose
    site worker died of NVFlare's port race is stopped at once, with everything it started, and run again on a
    clean sites' folder; a run past its time is stopped and named. (A stand-in for ``nvflare simulator``: the
    race itself cannot be provoked on demand.)"""
    from flamby_flare.simulator import PORT_RACE, run

    ws = tmp_path / "ws"
    script = tmp_path / "simulator.py"
    script.write_text(f"""
import pathlib, subprocess, sys, time
ws = pathlib.Path({str(ws)!r})
runs = ws / "runs"
runs.mkdir(parents=True, exist_ok=True)
n = len(list(runs.iterdir())) + 1
(runs / str(n)).write_text("")
if n == 1:  # a site worker that lost the race, and a child that would outlive a careless stop
    (ws / "site-1").mkdir()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    (ws / "child").write_text(str(child.pid))
    (ws / "site-1" / "log.txt").write_text("Traceback ...\\n{PORT_RACE}\\n")
    time.sleep(600)
sys.exit(0 if (ws / "site-1").exists() is False else 3)
""")
    start = time.monotonic()
    assert run([sys.executable, str(script)], ws) == 0 and time.monotonic() - start < 30
    assert sorted(p.name for p in (ws / "runs").iterdir()) == ["1", "2"]
    assert not alive([int((ws / "child").read_text())])
    assert (
        "a site worker lost NVFlare's port race (another process took its port): running the job again (2/3)"
        in capfd.readouterr().err
    )
    (tmp_path / "slow.py").write_text("import time; time.sleep(600)")
    with pytest.raises(subprocess.TimeoutExpired):
        run([sys.executable, str(tmp_path / "slow.py")], tmp_path / "ws2", timeout=2)

"""A run too large for the machine is refused in one line before any process starts (``flamby_flare.capacity``)."""

import resource
from pathlib import Path

import pytest

from flamby_flare import capacity, cli
from flamby_flare.capacity import CapacityError, check_capacity, estimate

JOB = Path(__file__).resolve().parents[1] / "jobs" / "fed_heart_disease_fedavg"


def test_estimate_grows_with_site_processes_and_poc_adds_the_client_parents():
    two, fifty = estimate(2), estimate(50)
    assert fifty.memory_mib - two.memory_mib == 48 * capacity.SITE_PROCESS_MIB
    assert estimate(50, poc=True).memory_mib - fifty.memory_mib == 50 * capacity.POC_CLIENT_MIB
    assert fifty.threads == 52 * capacity.THREADS_PER_PROCESS


def test_too_many_processes_for_the_memory_are_refused_saying_how_many_fit(monkeypatch):
    monkeypatch.setattr(capacity, "available_mib", lambda: 4096.0)
    assert check_capacity(4, "simulator").site_processes == 4  # the heart job's 4 sites fit in 4 GiB
    with pytest.raises(CapacityError) as err:
        check_capacity(50, "simulator (50 sites)")
    message = str(err.value)
    fits = int((4096 - capacity.SHARED_MIB - capacity.SERVER_MIB) // capacity.SITE_PROCESS_MIB)
    assert "\n" not in message and message.startswith("simulator (50 sites): 50 site processes need at least")
    assert f"use -t {fits} or fewer" in message


def test_a_process_limit_too_low_is_refused(monkeypatch):
    monkeypatch.setattr(capacity, "available_mib", lambda: None)  # no /proc/meminfo: memory not checked
    monkeypatch.setattr(capacity.resource, "getrlimit", lambda _: (100, resource.RLIM_INFINITY))
    with pytest.raises(CapacityError, match="ulimit -u"):
        check_capacity(10, "simulator")


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "4"])
def test_the_number_of_processes_is_checked(bad):
    with pytest.raises(CapacityError, match="must be an integer >= 1"):
        check_capacity(bad, "simulator")


def test_cli_simulator_refuses_before_starting_anything(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(capacity, "available_mib", lambda: 1024.0)
    started = []
    monkeypatch.setattr("subprocess.run", lambda *a, **k: started.append(a))
    assert cli.main(["simulator", str(JOB), "-w", str(tmp_path / "ws"), "-t", "4"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: simulator (4 sites): 4 site processes need at least")
    assert not started and not (tmp_path / "ws").exists()


@pytest.mark.parametrize("value", ["yes", ""])
def test_cli_simulator_refuses_a_bad_fork_switch_in_one_line(monkeypatch, tmp_path, capsys, value):
    monkeypatch.setenv("FLAMBY_FLARE_SIMULATOR_FORK", value)
    started = []
    monkeypatch.setattr("subprocess.run", lambda *a, **k: started.append(a))
    assert cli.main(["simulator", str(JOB), "-w", str(tmp_path / "ws"), "-t", "4"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: FLAMBY_FLARE_SIMULATOR_FORK must be 0 or 1, got {value!r}"
    assert not started and not (tmp_path / "ws").exists()


def test_forked_simulator_workers_need_less_and_the_refusal_counts_them_so(monkeypatch):
    assert (
        estimate(50, forked=True).memory_mib - estimate(2, forked=True).memory_mib
        == 48 * capacity.FORKED_SITE_PROCESS_MIB
    )
    assert estimate(50, forked=True).memory_mib < estimate(50).memory_mib
    assert estimate(50, forked=True).threads == estimate(50).threads + capacity.THREADS_PER_PROCESS  # the forkserver
    monkeypatch.setattr(capacity, "available_mib", lambda: 4096.0)
    with pytest.raises(CapacityError, match=r"use -t 27 or fewer"):  # (4096 - 800) // 120
        check_capacity(50, "simulator (50 sites)", forked=True)
    with pytest.raises(CapacityError, match=r"use -t 8 or fewer"):  # (4096 - 800) // 400
        check_capacity(50, "simulator (50 sites)")

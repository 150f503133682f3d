"""The simulator shim (``executors/simulator_shim.py``) patches exactly the NVFlare code it was written for: when
the installed NVFlare changes, this fails, and the shim must be rechecked (or dropped)."""

import importlib
import inspect

import pytest

from executors import simulator_shim


@pytest.mark.parametrize("name", list(simulator_shim.PATCHES))
def test_the_installed_nvflare_is_the_one_the_shim_was_written_for(name):
    import nvflare

    module = importlib.import_module(name)
    assert nvflare.__version__ == simulator_shim.NVFLARE_VERSION, "NVFlare changed: recheck executors/simulator_shim.py"
    assert simulator_shim.source_digest(module) == simulator_shim.PATCHES[name][0], \
        f"NVFlare's {name} changed: recheck executors/simulator_shim.py"


def test_the_waits_it_shortens_are_where_it_says():
    worker = importlib.import_module(simulator_shim.WORKER_MODULE)
    retry = inspect.getsource(worker.ClientTaskWorker.do_one_task)
    assert "if run_task_tries >= FETCH_TASK_RUN_RETRY:\n                                    break\n" \
           "                                time.sleep(0.5)" in retry
    assert "mpm.run(main_func=main, run_dir=args.workspace, args=args)\n    time.sleep(2)" in inspect.getsource(worker)
    runner = importlib.import_module(simulator_shim.RUNNER_MODULE).SimulatorClientRunner
    assert "interval = 1\n" in inspect.getsource(runner.run_client_thread)
    mpm = importlib.import_module(simulator_shim.MPM_MODULE)
    assert "time.sleep(shutdown_grace_time)" in inspect.getsource(mpm.MainProcessMonitor._start_shutdown)
    assert "shutdown_grace_time=3" in inspect.getsource(importlib.import_module(simulator_shim.RUNNER_MODULE))


def test_only_the_listed_waits_change(monkeypatch):
    slept = []
    monkeypatch.setattr(simulator_shim._time, "sleep", slept.append)
    shimmed = simulator_shim.ShortTime({0.5: 0.02, 2: 0.0})
    for seconds in (0.5, 2, 0.1, 1.0):
        shimmed.sleep(seconds)
    assert slept == [0.02, 0.1, 1.0]
    assert shimmed.time is simulator_shim._time.time


def test_outside_the_simulator_nothing_is_patched():
    assert simulator_shim.worker_module() is None and simulator_shim.apply_worker() is False

"""The simulator shim (``executors/simulator_shim.py``) patches exactly the NVFlare code it was written for: when
the installed NVFlare changes, this fails, and the shim must be rechecked (or dropped)."""

import copy
import importlib
import inspect
import json
import logging
import multiprocessing
import os
import pickle
import re
import signal
import stat
import subprocess
import sys
import threading
import time
import types

import pytest

from executors import simulator_forkserver, simulator_shim
from tests.simulator import undo_request_shims


@pytest.mark.parametrize("name", list(simulator_shim.PATCHES))
def test_the_installed_nvflare_is_the_one_the_shim_was_written_for(name):
    import nvflare

    module = importlib.import_module(name)
    assert nvflare.__version__ == simulator_shim.NVFLARE_VERSION, "NVFlare changed: recheck executors/simulator_shim.py"
    assert simulator_shim.source_digest(module) == simulator_shim.PATCHES[name][0], (
        f"NVFlare's {name} changed: recheck executors/simulator_shim.py"
    )


def test_the_waits_it_shortens_are_where_it_says():
    worker = importlib.import_module(simulator_shim.WORKER_MODULE)
    retry = inspect.getsource(worker.ClientTaskWorker.do_one_task)
    assert (
        "if run_task_tries >= FETCH_TASK_RUN_RETRY:\n                                    break\n"
        "                                time.sleep(0.5)" in retry
    )
    assert "mpm.run(main_func=main, run_dir=args.workspace, args=args)\n    time.sleep(2)" in inspect.getsource(worker)
    runner = importlib.import_module(simulator_shim.RUNNER_MODULE).SimulatorClientRunner
    assert "interval = 1\n" in inspect.getsource(runner.run_client_thread)
    mpm = importlib.import_module(simulator_shim.MPM_MODULE)
    assert "time.sleep(shutdown_grace_time)" in inspect.getsource(mpm.MainProcessMonitor._start_shutdown)
    assert "shutdown_grace_time=3" in inspect.getsource(importlib.import_module(simulator_shim.RUNNER_MODULE))
    fed_server = importlib.import_module(simulator_shim.FED_SERVER_MODULE)
    assert "time.sleep(self.check_engine_frequency)" in inspect.getsource(fed_server.FederatedServer.start_run)
    assert inspect.signature(fed_server.FederatedServer.__init__).parameters["check_engine_frequency"].default == 3.0
    simulator_server = importlib.import_module("nvflare.private.fed.app.deployer.simulator_deployer")
    assert "check_engine_frequency" not in inspect.getsource(simulator_server)  # the simulator's server keeps 3 s
    assert sorted(re.findall(r"time\.sleep\(([^)]*)\)", inspect.getsource(fed_server))) == [
        "0.1",
        "5.0",
        "check_interval",
        "self.check_engine_frequency",
    ]
    client_runner = importlib.import_module(simulator_shim.CLIENT_RUNNER_MODULE)
    sync = inspect.getsource(client_runner.ClientRunner.init_run)  # its one 0.5 s wait: before each ask
    assert (
        "while True:\n                # sync with server runner before starting\n                time.sleep(0.5)\n"
        in sync
    )
    assert inspect.getsource(client_runner).count("time.sleep(0.5)") == 1


def test_only_the_listed_waits_change(monkeypatch):
    slept = []
    monkeypatch.setattr(simulator_shim._time, "sleep", slept.append)
    shimmed = simulator_shim.ShortTime({0.5: 0.02, 2: 0.0}, {"run": 0.0})
    for seconds in (0.5, 2, 0.1, 1.0):
        shimmed.sleep(seconds)

    def run(seconds):  # a listed caller: whatever it asks
        shimmed.sleep(seconds)

    run(0.1), run(2.0)
    assert slept == [0.02, 0.1, 1.0]
    assert shimmed.time is simulator_shim._time.time


def test_the_wait_after_each_task_is_the_jobs_and_its_only_one():
    """``ClientTaskWorker.run``'s one sleep is the interval its task (or its last "try again") carries: the job's
    ``task_request_interval``, which the shim's ``CALLER_WAITS`` skips whatever its value."""
    worker = importlib.import_module(simulator_shim.WORKER_MODULE)
    run = inspect.getsource(worker.ClientTaskWorker.run)
    assert re.findall(r"time\.sleep\(([^)]*)\)", run) == ["interval"]
    assert "interval, stop_run, end_run_client = self.do_one_task(client, args)" in run
    assert "interval, task_processed = client_runner.fetch_and_run_one_task(fl_ctx)" in inspect.getsource(
        worker.ClientTaskWorker.do_one_task
    )
    fetch = inspect.getsource(
        importlib.import_module(simulator_shim.CLIENT_RUNNER_MODULE).ClientRunner.fetch_and_run_one_task
    )
    assert "task_fetch_interval = task_data.get_header(TaskConstant.WAIT_TIME, default_task_fetch_interval)" in fetch
    assert simulator_shim.CALLER_WAITS == {simulator_shim.WORKER_MODULE: {"run": 0.0, "_create_client_cell": 0.01}}
    connect = inspect.getsource(worker.ClientTaskWorker._create_client_cell)
    assert "while not cell.is_cell_connected(FQCN.ROOT_SERVER):\n            time.sleep(0.1)" in connect


class _Engine:
    """What ``ClientRunner._try_send_result_once`` uses of its engine, recording the messages it sends."""

    def __init__(self):
        self.sent = []

    def send_aux_request(self, targets, topic, request, timeout, fl_ctx, optional=False):
        from nvflare.apis.shareable import make_reply

        self.sent.append(topic)
        return {targets[0]: make_reply("OK")}

    def send_task_result(self, result, fl_ctx, timeout):
        self.sent.append("result")
        return True


def _send_one_result(client_runner) -> list[str]:
    from nvflare.apis.fl_context import FLContext
    from nvflare.apis.shareable import Shareable
    from nvflare.apis.signal import Signal

    runner = object.__new__(client_runner.ClientRunner)
    runner.engine, runner.parent_target, runner.run_abort_signal = _Engine(), "server", Signal()
    runner.submit_task_result_timeout, runner.task_check_timeout, runner.logger = 5, 5, logging.getLogger("t")
    assert runner._try_send_result_once(Shareable(), "task-1", FLContext()) == client_runner._TASK_CHECK_RESULT_OK
    return runner.engine.sent


def _as_simulator_worker(monkeypatch):
    """What ``apply_worker`` changes, undone after the test; returns NVFlare's worker and client runner modules."""
    from nvflare.widgets import fed_event

    worker = importlib.import_module(simulator_shim.WORKER_MODULE)
    client_runner = importlib.import_module(simulator_shim.CLIENT_RUNNER_MODULE)
    for module in (worker, client_runner, fed_event):
        monkeypatch.setattr(module, "time", module.time)
    monkeypatch.setattr(client_runner.ClientRunner, "_check_task_once", client_runner.ClientRunner._check_task_once)
    monkeypatch.setattr(fed_event.ClientFedEventRunner, "handle_event", fed_event.ClientFedEventRunner.handle_event)
    monkeypatch.setenv(simulator_shim.THREADS_ENV, "4")
    undo_request_shims(monkeypatch)
    return worker, client_runner


def test_a_simulator_site_sends_its_result_without_asking_first(monkeypatch):
    """NVFlare asks the server whether it still wants a result before sending it (one round trip a task);
    in a simulator worker the shim sends it at once. Outside one (POC, production), the ask stays."""
    from nvflare.apis.fl_constant import ReservedTopic

    worker, client_runner = _as_simulator_worker(monkeypatch)
    assert _send_one_result(client_runner) == [ReservedTopic.TASK_CHECK, "result"]
    monkeypatch.setitem(sys.modules, "__main__", worker)  # as in a simulator worker process
    assert simulator_shim.apply_worker() is True
    assert _send_one_result(client_runner) == ["result"]
    assert (
        worker.time.durations[0.5] == simulator_shim.retry_wait("4")
        and worker.time.callers == simulator_shim.CALLER_WAITS[simulator_shim.WORKER_MODULE]
    )


def test_the_server_drops_a_result_whose_task_is_gone():
    """What makes skipping the ask safe: a late result finds no client task and is not aggregated."""
    from nvflare.apis.impl.wf_comm_server import WFCommServer
    from nvflare.app_common.workflows.base_model_controller import BaseModelController

    from controllers.base import StrategyController

    submission = inspect.getsource(WFCommServer._do_process_submission)
    unknown = submission.index("if client_task is None:")
    assert (
        "self.controller.process_result_of_unknown_task(client, task_name, task_id, result, fl_ctx)"
        in submission[unknown:]
    )
    assert submission.index("return", unknown) < submission.index("task = client_task.task")
    # NVFlare's handling only logs it; a round's results are the replies send_model_and_wait collects
    assert StrategyController.process_result_of_unknown_task is BaseModelController.process_result_of_unknown_task
    assert "self.fl_ctx.set_prop(AppConstants.TRAINING_RESULT, result" in inspect.getsource(
        BaseModelController._accept_train_result
    )


def test_outside_the_simulator_nothing_is_patched():
    assert simulator_shim.worker_module() is None and simulator_shim.apply_worker() is False


def test_the_runner_starts_site_workers_as_the_fork_expects():
    """``ForkingSubprocess`` forks exactly this call, and its workers offer what the runner uses of them."""
    runner = importlib.import_module(simulator_shim.RUNNER_MODULE)
    source = inspect.getsource(runner)
    assert ' + " -m nvflare.private.fed.app.simulator.simulator_worker -o "' in source
    assert source.count("subprocess.Popen(") == 1
    assert (
        "process = subprocess.Popen(shlex.split(command, True), shell=False, preexec_fn=os.setsid, env=new_env)"
        in source
    )
    task = inspect.getsource(runner.SimulatorClientRunner.do_one_task) + inspect.getsource(
        runner.SimulatorClientRunner._cleanup_process
    )
    used = set(re.findall(r"\bprocess\.(\w+)", task))
    assert used == {"poll", "returncode", "terminate", "wait", "kill"}
    assert all(
        callable(getattr(simulator_forkserver.ForkedWorker, name, None)) or name == "returncode" for name in used
    )


WORKER = [sys.executable, "-m", simulator_forkserver.WORKER_MODULE, "-o", "/ws/site-1"]


@pytest.mark.parametrize(
    "args, kwargs, forked",
    [
        (WORKER, {"shell": False, "preexec_fn": os.setsid, "env": {}}, True),
        (WORKER, {"preexec_fn": os.setsid}, True),
        (WORKER[:3], {"preexec_fn": os.setsid}, False),  # no arguments: not NVFlare's call
        (WORKER, {"shell": True, "preexec_fn": os.setsid}, False),
        (WORKER, {"preexec_fn": None}, False),
        (WORKER, {"preexec_fn": os.setsid, "stdout": subprocess.PIPE}, False),
        (" ".join(WORKER), {"preexec_fn": os.setsid}, False),
        (["/usr/bin/python3", *WORKER[1:]], {"preexec_fn": os.setsid}, False),
        ([sys.executable, "-m", "nvflare.private.fed.app.simulator.simulator", "x"], {"preexec_fn": os.setsid}, False),
        ([sys.executable, "-c", "import os", "x"], {"preexec_fn": os.setsid}, False),
    ],
)
def test_only_nvflares_exact_worker_command_is_forked(args, kwargs, forked):
    assert simulator_forkserver.is_worker_command(args, kwargs) is forked


@pytest.mark.parametrize("value, on", [(None, True), ("1", True), ("0", False)])
def test_the_switch(value, on):
    environ = {} if value is None else {simulator_forkserver.ENV_SWITCH: value}
    assert simulator_forkserver.enabled(environ) is on


@pytest.mark.parametrize("value", ["", "yes", "true", " 1", "2"])
def test_a_bad_switch_is_one_line_naming_it(value):
    with pytest.raises(ValueError, match=rf"^{simulator_forkserver.ENV_SWITCH} must be 0 or 1, got "):
        simulator_forkserver.enabled({simulator_forkserver.ENV_SWITCH: value})


def test_any_other_command_runs_as_subprocess_does():
    forking = simulator_forkserver.ForkingSubprocess()
    proc = forking.Popen([sys.executable, "-c", "import sys; sys.exit(3)"], stdout=subprocess.DEVNULL)
    assert isinstance(proc, subprocess.Popen) and proc.wait(timeout=60) == 3
    assert forking.TimeoutExpired is subprocess.TimeoutExpired and forking.PIPE == subprocess.PIPE


def test_a_forked_worker_runs_nvflares_worker_module_with_its_arguments(tmp_path):
    """The real path: forked from the forkserver, the worker module runs as ``__main__`` in ``cwd`` with the
    given arguments and environment, in its own session; NVFlare's worker rejects the bogus argument (exit 2,
    argparse's usage on stderr)."""
    forking = simulator_forkserver.ForkingSubprocess()
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    worker = forking.Popen([*WORKER[:3], "--no-such-option"], shell=False, preexec_fn=os.setsid, env=env)
    assert isinstance(worker, simulator_forkserver.ForkedWorker) and worker.pid != os.getpid()
    assert worker.wait(timeout=120) == 2 and worker.poll() == 2 and worker.returncode == 2
    worker.terminate()  # a finished worker: nothing to do, no error
    worker.kill()


def _first_stream_id(fresh: bool, out) -> None:
    preloaded = simulator_forkserver.STREAM_IDS_MODULE in sys.modules  # inherited from the forkserver
    from nvflare.fuel.f3.streaming import stream_utils

    if fresh:
        simulator_forkserver._fresh_process()
    out.put((preloaded, stream_utils.gen_stream_id()))


def _stream_ids_of_two_forked_children(fresh: bool) -> list[int]:
    forking = simulator_forkserver.ForkingSubprocess()
    forking.start([simulator_forkserver.STREAM_IDS_MODULE])
    out = forking._context.SimpleQueue()
    ids = []
    for _ in range(2):
        child = forking._context.Process(target=_first_stream_id, args=(fresh, out))
        child.start()
        child.join(timeout=120)
        assert child.exitcode == 0
        preloaded, first_id = out.get()
        assert preloaded, "the forkserver did not preload NVFlare's streaming: the test would not test the fork"
        ids.append(first_id)
    return ids


def test_each_forked_worker_numbers_its_message_streams_afresh():
    """NVFlare draws a process's stream-id base once, at import: children forked from one forkserver would all
    number their streams alike (the control, first), and a site's next process would re-use its previous
    one's ids, which the server drops as a finished stream's (a lost result, a 300 s stall). A worker draws
    its own base, as ``_run_worker`` does first."""
    from nvflare.fuel.f3.streaming import byte_receiver, stream_utils

    assert "sid_base = int(time.time() * MILLION) + random.randint(0, MILLION)" in inspect.getsource(stream_utils)
    assert "return sid_base + stream_count" in inspect.getsource(stream_utils.gen_stream_id)
    assert "cls.rx_task_map.get((origin, sid), None)" in inspect.getsource(byte_receiver.RxTask.find_or_create_task)
    first, second = _stream_ids_of_two_forked_children(fresh=False)
    assert first == second, "NVFlare no longer draws its stream ids once per process: recheck _fresh_process"
    first, second = _stream_ids_of_two_forked_children(fresh=True)
    assert first != second
    assert "\n    _fresh_process()\n" in inspect.getsource(simulator_forkserver._run_worker)


def test_forked_worker_waits_terminates_and_kills_like_popen():
    context = multiprocessing.get_context("fork")
    process = context.Process(target=time.sleep, args=(60,))
    process.start()
    worker = simulator_forkserver.ForkedWorker(process)
    assert worker.pid == process.pid and worker.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        worker.wait(timeout=0.1)
    worker.terminate()
    assert worker.wait(timeout=30) == -signal.SIGTERM and worker.returncode == -signal.SIGTERM
    process = context.Process(target=time.sleep, args=(60,))
    process.start()
    worker = simulator_forkserver.ForkedWorker(process)
    worker.kill()
    assert worker.wait(timeout=30) == -signal.SIGKILL


def test_the_python_path_is_what_python_m_would_build():
    path = simulator_forkserver._python_path({"PYTHONPATH": f"/a{os.pathsep}/b{os.pathsep}"}, "/run")
    assert path[:3] == ["/run", "/a", "/b"] and len(path) == len(set(path))


def test_outside_the_simulator_no_forkserver_is_installed():
    runner = importlib.import_module(simulator_shim.RUNNER_MODULE)  # loaded, but this is not its server process
    assert simulator_shim.apply_server() is False
    assert not isinstance(runner.subprocess, simulator_forkserver.ForkingSubprocess)


def test_the_controller_starts_the_forkserver_with_its_datasets_site_imports(monkeypatch):
    """A controller built in the simulator's server hands its dataset's ``site_imports`` (MONAI for KiTS19) to
    the forkserver, which imports them once for every site worker; outside the simulator nothing starts."""
    from multiprocessing import forkserver

    import controllers

    runner = importlib.import_module(simulator_shim.RUNNER_MODULE)
    assert simulator_shim.warm_forkserver(["json"]) is False  # no forkserver installed: not the simulator's server
    started = []
    monkeypatch.setattr(
        forkserver, "ensure_running", lambda: started.append(list(forkserver._forkserver._preload_modules))
    )
    monkeypatch.setattr(runner, "subprocess", simulator_forkserver.ForkingSubprocess())
    controllers.FedAvg(dataset="fed_kits19")
    assert started == [simulator_forkserver.PRELOAD + ["monai.networks.nets", "monai.losses", "monai.transforms"]]


_HEAVY = (
    "pandas",
    "sklearn",
    "scipy",
    "monai",
    "efficientnet_pytorch",
    "nibabel",
    "lifelines",
    "pydicom",
    "tiffslide",
)  # seconds to import


@pytest.mark.parametrize(
    "dataset",
    [
        "fed_camelyon16",
        "fed_heart_disease",
        "fed_isic2019",
        "fed_ixi",
        "fed_kits19",
        "fed_lidc_idri",
        "fed_synthetic",
        "fed_tcga_brca",
    ],
)
def test_a_datasets_site_imports_are_what_its_code_imports(dataset):
    """Each module a dataset lists is imported by the dataset's own code (no stale entry) and importable; and
    each heavy third-party module its site code imports at the top of a file is listed (none missed)."""
    from pathlib import Path

    from flamby_flare.datasets import get_dataset
    from flamby_flare.datasets.lazy import site_imports

    package = get_dataset(dataset)
    files = [p for p in Path(package.__file__).parent.glob("*.py") if p.name != "__init__.py"]
    source = "\n".join(p.read_text() for p in files)
    listed = site_imports(package)
    for module in listed:
        head, _, tail = module.rpartition(".")
        assert re.search(
            rf"^\s*(import {re.escape(module)}\b|from {re.escape(module)} import|from {re.escape(head)} import .*\b{tail}\b)",
            source,
            re.M,
        ), f"{dataset} lists {module}, which its code does not import"
        importlib.import_module(module)
    offline = {"preprocess.py", "convert.py", "tiling.py"}  # `flamby-flare preprocess`'s, never a site's
    for path in (p for p in files if p.name not in offline):
        for module in re.findall(r"^(?:import|from) ([\w.]+)", path.read_text(), re.M):
            if module.split(".")[0] in _HEAVY:
                assert any(module == m or module.startswith(m + ".") or m.startswith(module + ".") for m in listed), (
                    f"{dataset}/{path.name} imports {module} at the top, missing from its site_imports"
                )


def test_the_runner_shares_one_build_context_between_its_threads():
    """The race ``PerThreadClientName`` closes is still NVFlare's: one dict, its client name set, then sent."""
    task = inspect.getsource(importlib.import_module(simulator_shim.RUNNER_MODULE).SimulatorClientRunner.do_one_task)
    assert 'self.build_ctx["client_name"] = client.client_name\n' in task
    assert "SimulatorConstants.BUILD_CTX: self.build_ctx," in task and "conn.send(data)" in task


def test_each_thread_sends_its_own_client_name():
    context = simulator_shim.PerThreadClientName({"client_name": "site-1", "sp_end_point": "x"})
    both_set, sent = threading.Barrier(2), {}

    def start_worker(name):
        context["client_name"] = name
        both_set.wait()  # the other thread has set its name too: NVFlare's shared dict would now hold one of them
        sent[name] = pickle.loads(pickle.dumps({"build_ctx": context}))["build_ctx"]

    threads = [threading.Thread(target=start_worker, args=(f"site-{i}",)) for i in (2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sent == {f"site-{i}": {"client_name": f"site-{i}", "sp_end_point": "x"} for i in (2, 3)}
    assert type(sent["site-2"]) is dict and context["client_name"] == "site-1" and context.get("sp_end_point") == "x"
    assert copy.deepcopy(context) == {"client_name": "site-1", "sp_end_point": "x"} and context.get("nothing", 5) == 5


def test_the_runner_gets_a_per_thread_build_context_once():
    class Runner:
        def __init__(self, build_ctx):
            self.build_ctx = build_ctx

    module = types.SimpleNamespace(SimulatorClientRunner=Runner)
    simulator_shim._per_thread_build_context(module)
    simulator_shim._per_thread_build_context(module)  # idempotent
    runner = Runner({"client_name": "a"})
    assert isinstance(runner.build_ctx, simulator_shim.PerThreadClientName) and runner.build_ctx["client_name"] == "a"
    assert not isinstance(runner.build_ctx.plain(), simulator_shim.PerThreadClientName)


def test_the_forkserver_answers_its_user_only():
    """Its socket (what a process would connect to, to have a worker forked) is a 0600 file in a 0700 folder."""
    from multiprocessing import forkserver

    simulator_forkserver.ForkingSubprocess().start()
    address = forkserver._forkserver._forkserver_address
    assert isinstance(address, str) and os.path.exists(address), address  # a file, not an abstract socket
    assert stat.S_IMODE(os.stat(address).st_mode) == 0o600 and os.stat(address).st_uid == os.getuid()
    assert stat.S_IMODE(os.stat(os.path.dirname(address)).st_mode) == 0o700


def test_the_forkserver_preloads_the_drivers_nvflare_imports(monkeypatch):
    """Under the very names NVFlare's driver manager imports them (a worker would import them again else)."""
    import nvflare.fuel.f3.drivers as drivers
    from nvflare.fuel.f3.drivers import driver_manager

    from executors import simulator_preload

    imported, real = [], importlib.import_module
    monkeypatch.setattr(driver_manager.importlib, "import_module", lambda name: imported.append(name) or real(name))
    driver_manager.DriverManager().search_folder(os.path.dirname(drivers.__file__), drivers.__package__)
    assert sorted(imported) == sorted(simulator_preload.driver_modules()) and simulator_preload.MISSING == []
    assert "executors.simulator_preload" in simulator_forkserver.PRELOAD


@pytest.mark.parametrize(
    "threads, wait",
    [
        ("1", 0.01),
        ("4", 0.02),
        ("20", 0.1),
        ("50", 0.25),
        ("100", 0.5),
        ("200", 0.5),
        (None, 0.5),
        ("", 0.5),
        ("x", 0.5),
        ("0", 0.5),
        ("-3", 0.5),
        ("1.5", 0.5),
    ],
)
def test_idle_sites_ask_less_often_the_more_site_processes_run(threads, wait):
    assert simulator_shim.retry_wait(threads) == pytest.approx(wait)


def _as_simulator_server(monkeypatch, cwd) -> list:
    """This process as the simulator's server process in ``cwd`` (what ``apply_server`` changes is undone after
    the test); returns the preload lists the forkserver is started with."""
    from multiprocessing import forkserver

    runner = importlib.import_module(simulator_shim.RUNNER_MODULE)
    for name in (simulator_shim.RUNNER_MODULE, simulator_shim.MPM_MODULE, simulator_shim.FED_SERVER_MODULE):
        module = importlib.import_module(name)
        monkeypatch.setattr(module, "time", module.time)
    monkeypatch.setattr(runner.SimulatorClientRunner, "__init__", runner.SimulatorClientRunner.__init__)
    monkeypatch.setattr(runner, "subprocess", runner.subprocess)
    monkeypatch.setattr(multiprocessing, "parent_process", lambda: object())
    monkeypatch.setenv(simulator_shim.THREADS_ENV, "")
    undo_request_shims(monkeypatch)
    monkeypatch.setenv(simulator_forkserver.ENV_SWITCH, "1")
    started = []
    monkeypatch.setattr(
        forkserver, "ensure_running", lambda: started.append(list(forkserver._forkserver._preload_modules))
    )
    monkeypatch.chdir(cwd)
    return started


def _deploy(root, workflows) -> None:
    config = root / simulator_shim.DEPLOYED_SERVER_CONFIG
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"workflows": workflows}) if not isinstance(workflows, str) else workflows)


def test_the_server_starts_the_forkserver_as_it_loads_our_controllers(monkeypatch, tmp_path):
    """Not once a controller is built (after the server's own 1.2 s torch import): its preload runs beside it,
    with the deployed app's datasets' site_imports."""
    _deploy(
        tmp_path,
        [
            {"id": "a", "path": "controllers.FedAvg", "args": {"dataset": "fed_kits19"}},
            {"id": "b", "path": "controllers.FedProx", "args": {"dataset": "fed_heart_disease"}},
        ],
    )
    started = _as_simulator_server(monkeypatch, tmp_path)
    assert simulator_shim.apply_server() is True
    assert started == [simulator_forkserver.PRELOAD + ["monai.networks.nets", "monai.losses", "monai.transforms"]]


@pytest.mark.parametrize(
    "privacy, preloaded",
    [
        ({}, False),
        ({"dp_sgd": {"max_grad_norm": 1.0, "noise_multiplier": 1.0, "delta": 1e-3}}, True),
        ({"client_dp": {"clip_norm": 0.5, "noise_multiplier": 0.5, "delta": 1e-3}}, True),
    ],
)
def test_the_forkserver_preloads_opacus_for_a_job_whose_sites_use_dp(monkeypatch, tmp_path, privacy, preloaded):
    """A DP job's site workers (one per task with -t below the sites) find Opacus imported already."""
    from flamby_flare.jobs import job_files

    files = job_files("fed_heart_disease", "fedavg", **privacy)
    for name in ("config_fed_server.json", "config_fed_client.json"):
        path = tmp_path / "simulate_job" / "app_server" / "config" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[f"app/config/{name}"])
    started = _as_simulator_server(monkeypatch, tmp_path)
    assert simulator_shim.apply_server() is True
    assert started == [simulator_forkserver.PRELOAD + (list(simulator_shim.PRIVACY_IMPORTS) if preloaded else [])]


@pytest.mark.parametrize(
    "config", ["{not json", "[7]", '{"executors": [{"executor": 7}]}', '{"task_result_filters": [{"filters": 7}]}']
)
def test_an_odd_site_config_preloads_no_opacus(monkeypatch, tmp_path, config):
    path = tmp_path / simulator_shim.DEPLOYED_CLIENT_CONFIG
    path.parent.mkdir(parents=True)
    path.write_text(config)
    monkeypatch.chdir(tmp_path)
    assert simulator_shim.deployed_privacy_imports() == ()


def test_the_preloaded_opacus_modules_are_those_privacy_imports():
    import privacy

    folder = os.path.dirname(privacy.__file__)
    used = set()
    for name in os.listdir(folder):
        if name.endswith(".py"):
            with open(os.path.join(folder, name)) as file:
                used.update(re.findall(r"^\s*(?:from|import) (opacus[\w.]*)", file.read(), re.M))
    assert used and used <= set(simulator_shim.PRIVACY_IMPORTS)
    assert all(importlib.import_module(m) for m in simulator_shim.PRIVACY_IMPORTS)


@pytest.mark.parametrize(
    "workflows",
    [
        [{"args": {"dataset": "fed_nope"}}],
        [{"args": {"dataset": ["fed_ixi"]}}],
        [{"args": {}}],
        "{not json",
        [7],
        [{"args": {"dataset": "../../etc"}}],
        None,
    ],
)
def test_without_a_known_dataset_for_every_workflow_the_controller_starts_it(monkeypatch, tmp_path, workflows):
    if workflows is not None:
        _deploy(tmp_path, workflows)
    started = _as_simulator_server(monkeypatch, tmp_path)
    assert simulator_shim.deployed_site_imports() is None
    assert simulator_shim.apply_server() is True and started == []


def test_a_simulator_site_ends_its_run_once_no_fed_event_is_pending(monkeypatch):
    """NVFlare's ClientFedEventRunner holds the end of a run until 2 s after it was built (or last emptied its
    queue); in a simulator worker it is ready at once, unless an incoming event still waits."""
    from nvflare.apis.event_type import EventType
    from nvflare.apis.fl_constant import FLContextKey
    from nvflare.apis.fl_context import FLContext
    from nvflare.widgets import fed_event

    def not_ready(runner) -> bool:
        fl_ctx = FLContext()
        runner.handle_event(EventType.CHECK_END_RUN_READINESS, fl_ctx)
        return fl_ctx.get_prop(FLContextKey.NOT_READY_TO_END_RUN, False)

    source = inspect.getsource(fed_event.FedEventRunner.handle_event)
    assert "elif time.time() - self.last_queue_empty_time < self.queue_empty_period:" in source
    worker, _ = _as_simulator_worker(monkeypatch)
    assert not_ready(fed_event.ClientFedEventRunner())  # NVFlare's: built just now
    monkeypatch.setitem(sys.modules, "__main__", worker)
    assert simulator_shim.apply_worker() is True
    runner = fed_event.ClientFedEventRunner()
    assert not not_ready(runner)
    runner.in_events.append(object())
    assert not_ready(runner)


def test_a_forked_worker_has_the_shims_waits_before_it_connects(monkeypatch):
    """NVFlare's worker connects (polling every 0.1 s) before it builds our executor, where an unforked worker gets
    the shim; a forked one gets it as NVFlare's worker module hands over to its main function."""
    from nvflare.fuel.f3.mpm import MainProcessMonitor

    calls = []
    monkeypatch.setattr(
        MainProcessMonitor, "run", classmethod(lambda cls, main_func, **kwargs: calls.append("mpm") or main_func())
    )
    monkeypatch.setattr(simulator_shim, "apply_worker", lambda: calls.append("shim"))
    simulator_shim.apply_worker_first()
    MainProcessMonitor.run(main_func=lambda: calls.append("main"), run_dir="unused", args=None)
    assert calls == ["shim", "mpm", "main"]
    run_worker = inspect.getsource(simulator_forkserver._run_worker)
    assert run_worker.index("simulator_shim.apply_worker_first()") < run_worker.index("runpy.run_module(")

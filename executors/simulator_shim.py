"""A documented shim for NVFlare 2.9.0's simulator: its hard-coded waits (and one local round trip a result),
shortened in the simulator's own processes when our controller or executor loads there. Results do not
depend on it (only idle waits change); POC and production processes are untouched (the patched modules are
the simulator's).

What NVFlare 2.9.0 waits, not configurable, and what the shim makes of it (``PATCHES``):

- ``nvflare/private/fed/app/simulator/simulator_worker.py`` (a site's worker process, run as ``__main__``):
  ``ClientTaskWorker.do_one_task`` sleeps 0.5 s each time it asks for a task that does not exist yet, which
  happens every round (a site that has sent its result asks for the next round before the server has made
  it): 0.005 s per live site process (``-t``), from 0.01 s to NVFlare's 0.5 s, so that the idle sites of a
  large run do not flood the server with requests (50 sites asking every 0.02 s starved the 2-core server
  until starting sites gave up). ``ClientTaskWorker.run`` then sleeps the task's ``WAIT_TIME`` (the job's
  ``task_request_interval``: ours 0.1 s, NVFlare's default 2 s) after every task and after every 3 asks
  that found none, so a site that finished a round first asked for the next 0.1 s later: skipped (the asks
  keep their own wait above; ``CALLER_WAITS``). A new worker polls every 0.1 s whether its cell has
  connected to the server (``_create_client_cell``; with ``-t`` below the number of sites, in every task's
  process): 0.01 s. After ``mpm.run`` the worker sleeps 2 s before it exits: skipped.
- ``nvflare/private/fed/client/client_runner.py`` (in a simulator worker only; POC and production clients
  keep it): ``ClientRunner.init_run`` sleeps 0.5 s before it first asks the server whether the run is up,
  in every new site process (with ``-t`` below the number of sites, every task): 0.02 s between asks. And
  before sending each result, ``ClientRunner._check_task_once`` asks the server whether it still waits for
  it (a round trip, 5-15 ms on 2 busy cores, "to fight against unstable network connections"; the
  simulator's are local sockets): not asked (``_task_still_wanted``); a result whose task is gone is
  dropped by the server as before.
- ``nvflare/widgets/fed_event.py`` (in a simulator worker only): when the run ends, a site's
  ``ClientFedEventRunner`` says it is not ready until 2 s (``queue_empty_period``) after its queue of
  incoming fed events last emptied, or after it was built, so every site of a short run (heart's lives
  about 3 s) waited out the rest in 0.5 s steps: ready once that queue is empty (``_ends_when_its_queue_is_empty``).
- ``nvflare/private/fed/app/simulator/simulator_runner.py`` (the server's process): ``run_client_thread``
  sleeps 1 s before every task it hands to a site process (with ``-t`` below the number of sites, every
  task), ``simulator_run_main`` polls the server's start and ``_create_connection`` a worker's socket every
  1 s: 0.01 s.
- ``nvflare/fuel/f3/mpm.py`` (the server's process): ``_start_shutdown`` sleeps its grace time, 3 s, "to let
  pending activities finish" once the run is over: 0.1 s (its sites have ended by then).
- ``nvflare/private/fed/server/fed_server.py`` (the server's process): ``FederatedServer.start_run`` checks
  every ``check_engine_frequency``, 3 s (the simulator's server sets none), whether the run's engine has
  stopped, so a finished run waited up to 3 s (1.5 s on average) before shutting down: 0.2 s.
- the runner's ``subprocess`` (the server's process), whose ``Popen`` starts every site worker as a new
  Python: ``executors.simulator_forkserver.ForkingSubprocess``, which forks that one command from a warm
  forkserver (``FLAMBY_FLARE_SIMULATOR_FORK=0``: off), started as the server loads our controllers, with the
  deployed app's datasets' ``site_imports`` (``deployed_site_imports``), so that its imports run beside the
  server's own (torch: 1.2 s) instead of after them. A forked worker gets the worker-side waits above before
  it connects (``apply_worker_first``); an unforked one as it builds our executor.
- how sites and server exchange requests (``executors.simulator_requests``, both sides): a site's ``get_task``
  and ``submit_update`` go as one cellnet message each way instead of through NVFlare's blob streamer, the
  server holds a task request until the site's task exists instead of answering "try again" (the site asked
  again every 0.02 s), and a round ends as soon as its last result is in, not at the task monitor's next look.

And one race it closes: ``SimulatorClientRunner.do_one_task`` runs in one thread per ``-t`` and each sets
``self.build_ctx["client_name"]`` in the one dict they share, deep-copies the deploy arguments, then sends
the dict to its new worker: a thread switch in between sends one worker another site's name. That worker
then runs as the other site, and the run waits forever for the site nobody runs (seen with ``-t 4``, forked
or not). ``PerThreadClientName`` keeps ``client_name`` per thread.

Each module is patched only when it is the exact one the shim was written for (NVFlare ``NVFLARE_VERSION``
and the module's source digest); otherwise nothing changes and a warning says so once.
``tests/test_simulator_shim.py`` fails loudly when the installed NVFlare no longer matches.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import logging
import multiprocessing
import os
import sys
import threading
import time as _time
from collections.abc import Sequence

from executors import simulator_requests

NVFLARE_VERSION = "2.9.0"
WORKER_MODULE = "nvflare.private.fed.app.simulator.simulator_worker"
RUNNER_MODULE = "nvflare.private.fed.app.simulator.simulator_runner"
MPM_MODULE = "nvflare.fuel.f3.mpm"
FED_SERVER_MODULE = "nvflare.private.fed.server.fed_server"
CLIENT_RUNNER_MODULE = "nvflare.private.fed.client.client_runner"
FED_EVENT_MODULE = "nvflare.widgets.fed_event"
# module -> (first 16 hex digits of the sha256 of its source, {a sleep's seconds: what it becomes})
PATCHES = {
    WORKER_MODULE: ("b2669ec2b0db14a3", {2: 0.0}),  # and its 0.5 s retry: retry_wait, by -t
    RUNNER_MODULE: ("b6e1127fba8eb427", {1.0: 0.01}),
    MPM_MODULE: ("00d6a0381ab6e3fa", {3: 0.1}),
    FED_SERVER_MODULE: ("36ea5381e87ad8cf", {3.0: 0.2}),  # its other waits (0.1, 0.2, 5 s) stay
    CLIENT_RUNNER_MODULE: ("61734ac2358dab5b", {0.5: 0.02}),
    FED_EVENT_MODULE: ("f063b3ff6011bbc2", {}),  # no sleep changes: ClientFedEventRunner's end-of-run wait
    # no wait of theirs changes: executors.simulator_requests relies on their exact code (None: time untouched)
    simulator_requests.CELL_MODULE: ("e5ad931eb5e5ab4e", None),
    simulator_requests.CORE_CELL_MODULE: ("1693c5d380e443b8", None),
    simulator_requests.COMMUNICATOR_MODULE: ("4ffbd5c1c2a18508", None),
    simulator_requests.SERVER_RUNNER_MODULE: ("24c6af580ab760e0", None),
    simulator_requests.WF_COMM_MODULE: ("82607052dc494371", None),
}
# module -> {a function: what every sleep it calls becomes}, for a sleep whose duration is not in the code
# ClientTaskWorker.run's wait after each task (the job's task_request_interval); _create_client_cell's 0.1 s polls
CALLER_WAITS = {WORKER_MODULE: {"run": 0.0, "_create_client_cell": 0.01}}

THREADS_ENV = "FLAMBY_FLARE_SIMULATOR_THREADS"  # the server's -t, passed to its workers in their environment
RETRY_PER_THREAD_S, RETRY_MIN_S, RETRY_MAX_S = 0.005, 0.01, 0.5

FORKED_MESSAGE = "flamby-flare: site worker forked from the simulator's forkserver (executors/simulator_forkserver.py)"

_log = logging.getLogger(__name__)


class ShortTime:
    """The ``time`` module, with some of ``sleep``'s durations replaced: by the duration asked (``durations``),
    or, for a sleep whose duration comes from elsewhere, by the function that calls it (``callers``)."""

    def __init__(self, durations: dict[float, float], callers: dict[str, float] | None = None):
        self.durations, self.callers = durations, callers or {}

    def __getattr__(self, name: str):
        return getattr(_time, name)

    def sleep(self, seconds: float) -> None:
        caller = sys._getframe(1).f_code.co_name
        seconds = self.callers[caller] if caller in self.callers else self.durations.get(seconds, seconds)
        if seconds > 0:
            _time.sleep(seconds)


class PerThreadClientName(dict):
    """The simulator runner's build context, its ``client_name`` kept per thread (the rest shared); it
    pickles and copies as the plain dict the calling thread sees."""

    def __init__(self, context: dict):
        super().__init__(context)
        self._local = threading.local()

    def __setitem__(self, key, value) -> None:
        if key == "client_name":
            self._local.name = value
        else:
            super().__setitem__(key, value)

    def __getitem__(self, key):
        if key == "client_name" and hasattr(self._local, "name"):
            return self._local.name
        return super().__getitem__(key)

    def get(self, key, default=None):
        return self[key] if key in self else default

    def plain(self) -> dict:
        """What this thread sees, as a dict."""
        return {**dict(self.items()), **({"client_name": self._local.name} if hasattr(self._local, "name") else {})}

    def __reduce__(self):
        return dict, (self.plain(),)

    def __copy__(self) -> dict:
        return self.plain()

    def __deepcopy__(self, memo) -> dict:
        import copy

        return copy.deepcopy(self.plain(), memo)


def _per_thread_build_context(runner) -> None:
    """``runner.SimulatorClientRunner``'s ``build_ctx`` a ``PerThreadClientName`` (once)."""
    cls = runner.SimulatorClientRunner
    if getattr(cls.__init__, "flamby_flare_shim", False):
        return
    original = cls.__init__

    @functools.wraps(original)
    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.build_ctx = PerThreadClientName(self.build_ctx)

    __init__.flamby_flare_shim = True
    cls.__init__ = __init__


def source_digest(module) -> str:
    return hashlib.sha256(inspect.getsource(module).encode()).hexdigest()[:16]


def retry_wait(threads: str | None) -> float:
    """A worker's wait before it asks again for a task not there yet, for ``threads`` live site processes (the
    server's ``-t`` as ``THREADS_ENV`` holds it; NVFlare's 0.5 s when it is not a positive integer)."""
    if not threads or not threads.isdigit() or int(threads) < 1:
        return RETRY_MAX_S
    return min(RETRY_MAX_S, max(RETRY_MIN_S, RETRY_PER_THREAD_S * int(threads)))


def exact(name: str, module=None) -> bool:
    """Whether the installed module ``name`` (``module``: that module, as loaded) is the one the shim was written
    for (else a warning, once)."""
    import importlib

    import nvflare

    module = module if module is not None else importlib.import_module(name)
    if nvflare.__version__ == NVFLARE_VERSION and source_digest(module) == PATCHES[name][0]:
        return True
    if name not in _warned:
        _warned.add(name)
        _log.warning(
            "flamby-flare: %s is not NVFlare %s's, which its shim was written for; what the shim changes "
            "there stays NVFlare's (a simulator run is slower, results are the same)",
            name,
            NVFLARE_VERSION,
        )
    return False


_warned: set[str] = set()


def _patch(name: str, module, durations: dict[float, float] | None = None) -> bool:
    if isinstance(getattr(module, "time", None), ShortTime):
        return True
    if not exact(name, module):
        return False
    module.time = ShortTime({**PATCHES[name][1], **(durations or {})}, CALLER_WAITS.get(name))
    return True


def _if_exact(modules: tuple[str, ...], apply) -> bool:
    """``apply()`` (a ``simulator_requests`` change) when every module it relies on is the one it was written
    for; each mismatch is warned of."""
    if all([exact(name) for name in modules]):  # a list: every module checked, not only up to the first mismatch
        apply()
        return True
    return False


def _direct_requests() -> bool:
    """A site worker's requests to the server as one message each way (``simulator_requests``)."""
    r = simulator_requests
    return _if_exact((r.CELL_MODULE, r.CORE_CELL_MODULE, r.COMMUNICATOR_MODULE), r.direct_server_commands)


def _held_requests() -> bool:
    """The server holds a site's task request until its task exists (``simulator_requests``)."""
    r = simulator_requests
    return _if_exact((r.SERVER_RUNNER_MODULE, r.WF_COMM_MODULE, r.CORE_CELL_MODULE), r.hold_task_requests)


def worker_module():
    """The running simulator worker's module (it runs as ``__main__``), or None outside one."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return main if spec is not None and spec.name == WORKER_MODULE else None


def apply_worker() -> bool:
    """In a simulator worker process (a site): shorten its waits; True if applied."""
    module = worker_module()
    if module is None:
        return False
    if multiprocessing.parent_process() is not None:
        _log.info(FORKED_MESSAGE)
    import nvflare.private.fed.client.client_runner as client_runner
    import nvflare.widgets.fed_event as fed_event

    retry = {0.5: retry_wait(os.environ.get(THREADS_ENV))}
    runner_patched = _patch(CLIENT_RUNNER_MODULE, client_runner)
    if runner_patched:
        client_runner.ClientRunner._check_task_once = _task_still_wanted
    events_patched = _patch(FED_EVENT_MODULE, fed_event)
    if events_patched and not hasattr(fed_event.ClientFedEventRunner.handle_event, "__wrapped__"):
        fed_event.ClientFedEventRunner.handle_event = _ends_when_its_queue_is_empty(
            fed_event.ClientFedEventRunner.handle_event
        )
    return _patch(WORKER_MODULE, module, retry) & runner_patched & events_patched & _direct_requests()


def _ends_when_its_queue_is_empty(handle_event):
    """``ClientFedEventRunner.handle_event`` in a simulator worker: at the end of the run the site is ready as
    soon as no incoming fed event is left to process, without NVFlare's further 2 s (``queue_empty_period``)
    since its queue last emptied, or since it was built: a site that lived under 2 s waited out the rest."""

    @functools.wraps(handle_event)
    def handle(self, event_type: str, fl_ctx) -> None:
        self.queue_empty_period = 0.0
        handle_event(self, event_type, fl_ctx)

    return handle


def apply_worker_first() -> None:
    """In a forked worker, before NVFlare's worker module runs: ``apply_worker`` as that module hands over to its
    main function (``MainProcessMonitor.run``), so its waits are short from its first connection on; an unforked
    worker gets them only as it builds our executor (after it has connected, every 0.1 s)."""
    from nvflare.fuel.f3.mpm import MainProcessMonitor

    run = MainProcessMonitor.run.__func__

    def run_shimmed(cls, main_func, *args, **kwargs):
        apply_worker()
        return run(cls, main_func, *args, **kwargs)

    MainProcessMonitor.run = classmethod(run_shimmed)


def _task_still_wanted(runner, task_id: str, fl_ctx) -> int:
    """``ClientRunner._check_task_once`` in a simulator worker: no round trip to ask the server whether it still
    waits for this task's result (NVFlare asks before every result, against unstable networks); the result is
    sent at once, and the server drops it just the same if the task is gone (``WFCommServer.process_submission``)."""
    return sys.modules[CLIENT_RUNNER_MODULE]._TASK_CHECK_RESULT_OK


def apply_server() -> bool:
    """In the simulator's server process (the runner's module is loaded there, not in POC or production):
    shorten its waits and fork its site workers from a warm forkserver; True if the waits were shortened."""
    runner = sys.modules.get(RUNNER_MODULE)
    if runner is None or multiprocessing.parent_process() is None:  # the server is the simulator's child process
        return False
    import nvflare.fuel.f3.mpm as mpm
    import nvflare.private.fed.server.fed_server as fed_server

    from executors import simulator_forkserver  # imported here: it preloads this module's package

    os.environ[THREADS_ENV] = str(simulator_threads())  # the workers' environment is a copy of the server's
    runner_patched = _patch(RUNNER_MODULE, runner)  # the fork and the race's fix rely on the runner's exact code
    if runner_patched:
        _per_thread_build_context(runner)
    if (
        runner_patched
        and simulator_forkserver.enabled()
        and not isinstance(runner.subprocess, simulator_forkserver.ForkingSubprocess)
    ):
        runner.subprocess = simulator_forkserver.ForkingSubprocess()  # started by warm_forkserver, or the first worker
        modules = deployed_site_imports()
        if modules is not None:  # now: its imports overlap the server's own (torch, 1.2 s) instead of following them
            warm_forkserver(modules)
    return runner_patched & _patch(MPM_MODULE, mpm) & _patch(FED_SERVER_MODULE, fed_server) & _held_requests()


DEPLOYED_APP_CONFIG = os.path.join("simulate_job", "app_server", "config")  # from the server's cwd
DEPLOYED_SERVER_CONFIG = os.path.join(DEPLOYED_APP_CONFIG, "config_fed_server.json")
DEPLOYED_CLIENT_CONFIG = os.path.join(DEPLOYED_APP_CONFIG, "config_fed_client.json")
# The Opacus modules ``privacy`` imports where it uses them (named here: importing ``privacy`` imports torch,
# which the forkserver must not wait for); tests/test_simulator_shim.py checks them against privacy's code.
PRIVACY_IMPORTS = (
    "opacus",
    "opacus.optimizers",
    "opacus.validators",
    "opacus.utils.uniform_sampler",
    "opacus.accountants",
    "opacus.accountants.utils",
)
_UNREADABLE = (OSError, ValueError, LookupError, TypeError, AttributeError)  # a missing, non-JSON or odd config


def _deployed(path: str) -> dict:
    import json

    with open(path) as file:
        return json.load(file)


def deployed_site_imports() -> tuple[str, ...] | None:
    """The ``site_imports`` of the datasets of the server app the simulator has deployed and is loading (its
    workflows' ``dataset`` arguments, each one a known dataset), then ``PRIVACY_IMPORTS`` when its sites
    use DP (``deployed_privacy_imports``); None when the datasets are not known for sure (the controllers then
    start the forkserver as they are built). Only fixed module names result, never one from the job."""
    from flamby_flare.datasets import get_dataset
    from flamby_flare.datasets.lazy import site_imports

    try:
        modules: dict[str, None] = {}
        for workflow in _deployed(DEPLOYED_SERVER_CONFIG)["workflows"]:
            modules.update(dict.fromkeys(site_imports(get_dataset(workflow["args"]["dataset"]))))
    except _UNREADABLE:  # an unknown dataset: a KeyError
        return None
    return tuple(modules) + deployed_privacy_imports()


def deployed_privacy_imports() -> tuple[str, ...]:
    """``PRIVACY_IMPORTS`` (Opacus: 1.5 s of every forked worker on 2 cores, else) when the deployed site app
    trains with DP-SGD (an executor's ``dp_sgd`` argument) or filters its results with client-level DP
    (``jobs.CLIENT_DP_FILTER``); nothing otherwise, or when that app config cannot be read."""
    from flamby_flare.jobs import CLIENT_DP_FILTER

    try:
        config = _deployed(DEPLOYED_CLIENT_CONFIG)
        dp_sgd = any((entry["executor"].get("args") or {}).get("dp_sgd") for entry in config.get("executors", []))
        client_dp = any(
            f.get("path") == CLIENT_DP_FILTER
            for group in config.get("task_result_filters", [])
            for f in group.get("filters", [])
        )
    except _UNREADABLE:
        return ()
    return PRIVACY_IMPORTS if dp_sgd or client_dp else ()


def warm_forkserver(modules: Sequence[str] = ()) -> bool:
    """In the simulator's server process, with forked site workers: start their forkserver now, preloading
    ``modules`` too (a controller passes its dataset's ``site_imports`` as it is built, right after NVFlare
    loads it). True if there is a forkserver to start; elsewhere nothing happens."""
    forking = getattr(sys.modules.get(RUNNER_MODULE), "subprocess", None)
    from executors import simulator_forkserver

    if not isinstance(forking, simulator_forkserver.ForkingSubprocess):
        return False
    forking.start(modules)
    return True


def simulator_threads() -> int | None:
    """In the simulator's server process, the number of site processes it runs at once (``-t``; NVFlare's
    default is 1); None elsewhere."""
    if RUNNER_MODULE not in sys.modules:
        return None
    argv = sys.argv
    for i, arg in enumerate(argv):
        if arg in ("-t", "--threads") and i + 1 < len(argv) and argv[i + 1].isdigit():
            return int(argv[i + 1])
        if arg.startswith("--threads="):
            return int(arg.split("=", 1)[1])
    return 1

"""Site workers of NVFlare's simulator forked from one warm process, instead of each started as a new Python.

NVFlare 2.9.0's simulator server (``nvflare/private/fed/app/simulator/simulator_runner.py``,
``SimulatorClientRunner.do_one_task``) starts every site worker with
``subprocess.Popen([sys.executable, "-m", WORKER_MODULE, ...], preexec_fn=os.setsid, env=...)``: a new
interpreter that imports NVFlare and torch again (2.4 s of a worker's start and 380-430 MiB of its own
memory, PSS, on the 2-core machine; forked: 0.65 s and 113-250 MiB, docs/results.md).
With ``-t`` below the number of sites it does so for every task. ``ForkingSubprocess`` stands in for the
runner module's ``subprocess``: that exact worker command is run in a child forked from a multiprocessing
forkserver that has already imported ``PRELOAD`` (the pages of those imports shared copy-on-write between
all site workers); any other command goes to the real ``subprocess.Popen``. The worker then runs as it
would have: NVFlare's own ``simulator_worker`` module as ``__main__``, with the command's arguments, the
environment and ``sys.path`` it was given, in its own session.

The forkserver belongs to one simulator run (started by its server process, gone with it); its socket is a
0600 file in a 0700 folder of that process (Python's ``multiprocessing``), so only the same user reaches it.
A forked worker draws afresh what NVFlare draws once per process at import (``_fresh_process``), as a new Python
would. Only the worker's command line is forked; results are bit-identical (``tests/test_simulator.py`` runs ``-t 4``
unforked against ``-t 2`` forked; ``tests/test_main_job.py`` pins the main job's values forked). Set
``FLAMBY_FLARE_SIMULATOR_FORK=0`` to start every worker as NVFlare does.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import random
import runpy
import subprocess
import sys
import time
from typing import Any, Sequence

WORKER_MODULE = "nvflare.private.fed.app.simulator.simulator_worker"
ENV_SWITCH = "FLAMBY_FLARE_SIMULATOR_FORK"
# nvflare.cli: multiprocessing runs the server's main script (NVFlare's ``nvflare``, which imports it) in every
# forked child as ``__mp_main__`` (``multiprocessing.spawn.prepare``): 0.27 s a worker unless preloaded.
PRELOAD = [
    "numpy",
    "torch",
    WORKER_MODULE,
    "executors.site_executor",
    "executors.simulator_forkserver",
    "executors.simulator_preload",
    "nvflare.cli",
]


def enabled(environ: dict[str, str] | None = None) -> bool:
    """Whether the simulator's site workers are forked (on unless ``FLAMBY_FLARE_SIMULATOR_FORK=0``)."""
    value = (os.environ if environ is None else environ).get(ENV_SWITCH, "1")
    if value not in ("0", "1"):
        raise ValueError(f"{ENV_SWITCH} must be 0 or 1, got {value!r}")
    return value == "1" and "forkserver" in multiprocessing.get_all_start_methods()


def is_worker_command(args: Any, kwargs: dict[str, Any]) -> bool:
    """True for exactly the call NVFlare's runner starts a site worker with: ``[sys.executable, "-m",
    WORKER_MODULE, ...]``, ``shell=False``, ``preexec_fn=os.setsid`` and at most ``env`` besides."""
    return (
        isinstance(args, list)
        and len(args) > 3
        and all(isinstance(a, str) for a in args)
        and args[:3] == [sys.executable, "-m", WORKER_MODULE]
        and set(kwargs) <= {"shell", "preexec_fn", "env"}
        and kwargs.get("shell", False) is False
        and kwargs.get("preexec_fn") is os.setsid
    )


def _python_path(environ: dict[str, str], cwd: str) -> list[str]:
    """``sys.path`` as ``python -m`` would build it in ``cwd`` with ``environ``'s PYTHONPATH."""
    front = [cwd] + [p for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return front + [p for p in sys.path if p and p not in front]


def _name_process(arguments: list[str]) -> None:
    """Name the process after its site (``--client``), as ``ps`` and ``top`` show it: its command line is the
    forkserver's. Linux only; best effort."""
    if "--client" in arguments[:-1]:
        try:
            with open("/proc/self/comm", "w") as comm:
                comm.write(arguments[arguments.index("--client") + 1][:15])
        except OSError:
            pass


STREAM_IDS_MODULE = "nvflare.fuel.f3.streaming.stream_utils"


def _fresh_process() -> None:
    """In a forked child, draw what NVFlare draws once per process at import, as a new Python would.

    NVFlare 2.9.0 numbers a process's message streams ``sid_base + 1, + 2, ...`` (``stream_utils``:
    ``sid_base`` is microseconds + a random number, drawn at import, here in the forkserver). The server keys
    each stream it receives by (sender, id) and keeps a finished one for a while to drop its late frames. Every
    forked worker inherited the same base, so a site's next process (with ``-t`` below the number of sites,
    one per task) re-used its previous process's ids: its first messages matched finished streams and were
    dropped. A lost result stalled the run 300 s until NVFlare sent it again (1 in 4 KiTS19 runs with ``-t 3``
    for 6 sites). Python's own ``random`` is re-seeded at fork; this draws ``sid_base`` again from it."""
    stream_ids = sys.modules.get(STREAM_IDS_MODULE)
    if stream_ids is not None:  # the child has one thread: the module's lock is not needed
        stream_ids.sid_base = int(time.time() * stream_ids.MILLION) + random.randint(0, stream_ids.MILLION)
        stream_ids.stream_count = 0


def _run_worker(arguments: list[str], environ: dict[str, str], cwd: str) -> None:
    """In the forked child: become NVFlare's simulator worker process, ``python -m WORKER_MODULE
    *arguments`` (``preexec_fn=os.setsid`` included)."""
    _fresh_process()
    gc.freeze()  # the preloaded objects stay shared: the collector does not write to their pages
    _name_process(arguments)
    os.setsid()
    os.environ.clear()
    os.environ.update(environ)
    os.chdir(cwd)
    sys.path[:] = _python_path(environ, cwd)
    sys.argv = [WORKER_MODULE, *arguments]  # run_module puts the module's file first, as -m does
    sys.modules.pop(WORKER_MODULE, None)  # preloaded for its imports; it runs afresh as __main__
    from executors import simulator_shim

    simulator_shim.apply_worker_first()
    runpy.run_module(WORKER_MODULE, run_name="__main__", alter_sys=True)


class ForkedWorker:
    """The part of ``subprocess.Popen`` NVFlare's runner uses (pid, returncode, poll, wait, terminate,
    kill), over a forked ``multiprocessing`` process."""

    def __init__(self, process: multiprocessing.process.BaseProcess):
        self._process = process
        self.pid = process.pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and not self._process.is_alive():
            self._process.join()
            self.returncode = self._process.exitcode
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self.poll() is None:
            raise subprocess.TimeoutExpired(WORKER_MODULE, timeout)
        return self.returncode

    def terminate(self) -> None:
        if self.poll() is None:
            self._process.terminate()

    def kill(self) -> None:
        if self.poll() is None:
            self._process.kill()


class ForkingSubprocess:
    """``subprocess`` for NVFlare's simulator runner module: ``Popen`` forks the site worker command from
    a warm forkserver; everything else is the real module."""

    def __init__(self) -> None:
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(PRELOAD)

    def __getattr__(self, name: str):
        return getattr(subprocess, name)

    def start(self, extra: Sequence[str] = ()) -> None:
        """Start the forkserver now, so its imports overlap the simulator's own start-up; it preloads ``extra``
        too (the run's dataset's ``site_imports``, e.g. MONAI: 5-10 s a worker on 2 cores, else). Once it runs,
        nothing changes (the first call, or the first worker, starts it)."""
        from multiprocessing import forkserver

        self._context.set_forkserver_preload(PRELOAD + [m for m in extra if m not in PRELOAD])
        forkserver.ensure_running()

    def Popen(self, args: Sequence[str], **kwargs: Any):  # noqa: N802 (subprocess's name)
        if not is_worker_command(args, kwargs):
            return subprocess.Popen(args, **kwargs)
        environ = dict(os.environ if kwargs.get("env") is None else kwargs["env"])
        process = self._context.Process(
            target=_run_worker, args=(list(args[3:]), environ, os.getcwd()), name="simulator-worker"
        )
        process.start()
        return ForkedWorker(process)

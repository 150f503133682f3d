"""The processes a command starts, stopped together: Ctrl-C (or SIGTERM) on a ``flamby-flare`` command stops
every process it started within seconds, NVFlare's site workers included (the simulator starts them in
sessions of their own, out of the reach of the terminal's Ctrl-C)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path


def _children() -> dict[int, list[int]]:
    table: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):  # gone meanwhile
            continue
        table.setdefault(parent, []).append(int(entry.name))
    return table


def descendants(pid: int) -> list[int]:
    """``pid``'s processes, children first, then theirs (read from ``/proc`` at this moment)."""
    table, found, todo = _children(), [], [pid]
    while todo:
        for child in table.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is gone for our purpose
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stop_tree(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """Stop ``proc`` and every process under it: SIGTERM to all (the tree is read first: an orphan is no longer
    found under its parent), then SIGKILL to whatever still runs after ``grace`` seconds; ``proc`` is reaped."""
    pids = [proc.pid, *descendants(proc.pid)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + grace
        while (proc.poll() is None or any(map(_alive, pids[1:]))) and time.monotonic() < deadline:
            time.sleep(0.05)
        if proc.poll() is not None and not any(map(_alive, pids[1:])):
            return


@contextlib.contextmanager
def terminate_as_interrupt():
    """While in this block, SIGTERM raises ``KeyboardInterrupt`` in the main thread, as Ctrl-C does, so one path
    cleans up both; the handler before it is put back after (a process that calls a command and goes on, and
    what it forks later, keep theirs)."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

"""How a simulator site asks the server for its next task and sends its result: one message each way, and a
request that waits at the server for its task instead of being asked again. Part of the simulator shim
(``executors.simulator_shim`` applies it, NVFlare 2.9.0 only, digest-pinned like the rest); POC and production
processes are untouched.

- **Direct requests** (a site worker): NVFlare's ``Cell`` sends every request of a "stream channel", the sites'
  ``get_task`` and ``submit_update`` among them (``CellChannel.SERVER_COMMAND``), through its blob streamer:
  the request in chunks with acknowledgements, the reply streamed back the same way, each hop on its own
  thread pool. The server's cell also takes such requests as plain cellnet messages (``Cell._register_request_cb``
  registers every request callback with its core cell too). ``direct_server_commands`` sends them so: one
  message each way (NVFlare's ``CoreCell.send_request``, the request's ``timeout`` unchanged). On the 2-core
  machine this took a 105-round heart job's CPU time from 22.9 s to 18.0 s and its rounds from 9.7 s to 7.6 s
  (docs/results.md). A message may be up to NVFlare's ``max_message_size`` (2 GiB); the largest baseline model
  here, Fed-KITS19's, is 235 MiB, and the image jobs' arrays travel as download references anyway.
- **Held task requests** (the server): a site that asks for a task before the server has made it got "try
  again" and asked again (every 0.02 s with ``-t 4``), each ask a round trip through both processes, and the
  round waited until the next ask. ``hold_task_requests`` makes ``ServerRunner._try_to_get_task`` wait up to
  ``HOLD_S`` for a task the asking site can take: it checks again whenever the controller schedules a task
  (``WFCommServer._schedule_task``), at least every ``RECHECK_S``, and answers as before once one is there, the
  run is no longer started, or the time is up.
  At most ``MAX_HELD`` requests wait at once (each holds a thread of NVFlare's request pools, 64 or 100 threads);
  a further one is answered at once, as before.
- **A round ends when its last result is in** (the server): the controller's task monitor checked every
  ``task_check_period`` (ours 5 ms) whether a task had all its results, and the controller checked as often
  whether the monitor had ended it, two waits in series every round. Both waits (``WFCommServer._monitor_tasks``
  and ``wait_for_task``, its module's only two sleeps) now also end as soon as a result is processed or a task
  ends (``WakeableTime``); they still look every ``task_check_period`` otherwise.

None of them changes what a site computes or in which order the server aggregates: results are bit-identical
(``tests/test_simulator.py``, ``tests/test_main_job.py``).
"""

from __future__ import annotations

import functools
import sys
import threading
import time

CELL_MODULE = "nvflare.fuel.f3.cellnet.cell"
CORE_CELL_MODULE = "nvflare.fuel.f3.cellnet.core_cell"
COMMUNICATOR_MODULE = "nvflare.private.fed.client.communicator"
SERVER_RUNNER_MODULE = "nvflare.private.fed.server.server_runner"
WF_COMM_MODULE = "nvflare.apis.impl.wf_comm_server"

HOLD_S = 0.5  # well below the sites' get_task timeout (NVFlare's communication_timeout, 300 s)
RECHECK_S = 0.05
MAX_HELD = 32


class Events:
    """A condition that counts its events: a waiter that looked at count ``seen`` waits only if none happened
    since (so none is missed between its look and its wait)."""

    def __init__(self):
        self.condition, self.count = threading.Condition(), 0

    def notify(self) -> None:
        with self.condition:
            self.count += 1
            self.condition.notify_all()

    def wait(self, seen: int, timeout: float) -> None:
        with self.condition:
            if self.count == seen:
                self.condition.wait(timeout)


new_tasks = Events()  # a task was scheduled: held task requests look again
progress = Events()  # a result was processed or a task ended: the task monitor and the controller look again
_held = 0
_held_lock = threading.Lock()


def _send_server_command(send_request):
    """``Cell.send_request`` with the sites' requests to the server as plain cellnet messages (see the module
    docstring); every other request as NVFlare sends it."""

    @functools.wraps(send_request)
    def send(self, *args, **kwargs):
        from nvflare.fuel.f3.cellnet.defs import CellChannel
        from nvflare.fuel.f3.cellnet.utils import encode_payload

        if args or kwargs.get("channel") != CellChannel.SERVER_COMMAND or not set(kwargs) <= _SEND_ARGUMENTS:
            return send_request(self, *args, **kwargs)
        request = kwargs["request"]
        encode_payload(request, fobs_ctx=self.core_cell.get_fobs_context())  # its size header, which NVFlare logs
        return self.core_cell.send_request(
            channel=kwargs["channel"],
            topic=kwargs["topic"],
            target=kwargs["target"],
            request=request,
            timeout=kwargs.get("timeout"),
            secure=kwargs.get("secure", False),
            optional=kwargs.get("optional", False),
        )

    send.flamby_flare_shim = True
    return send


# what NVFlare's Communicator passes (the abort signal only stops a streamed transfer; the timeout still bounds the wait)
_SEND_ARGUMENTS = {"channel", "topic", "target", "request", "timeout", "secure", "optional", "abort_signal"}


def _decode_in_the_receivers_context(decode_payload):
    """``core_cell.decode_payload`` with the receiving cell's FOBS context (what the streamed path decodes with):
    NVFlare's plain-message path decodes without one, so an array sent as a download reference (the image jobs'
    megabytes, ``np_download_chunk_size`` above 0) could not be fetched from its sender."""

    from nvflare.fuel.f3.cellnet.core_cell import CoreCell
    from nvflare.fuel.f3.cellnet.defs import MessageHeaderKey

    @functools.wraps(decode_payload)
    def decode(message, encoding_key=MessageHeaderKey.PAYLOAD_ENCODING, fobs_ctx=None):
        if fobs_ctx is None:
            cell = CoreCell.ALL_CELLS.get(message.get_header(MessageHeaderKey.DESTINATION))
            fobs_ctx = cell.get_fobs_context() if cell is not None else None
        return decode_payload(message, encoding_key, fobs_ctx)

    decode.flamby_flare_shim = True
    return decode


def decode_in_context() -> None:
    """In a site worker and the server: plain cellnet messages decode as streamed ones do (once)."""
    from nvflare.fuel.f3.cellnet import core_cell

    if not getattr(core_cell.decode_payload, "flamby_flare_shim", False):
        core_cell.decode_payload = _decode_in_the_receivers_context(core_cell.decode_payload)


def direct_server_commands() -> None:
    """In a site worker: its ``get_task`` and ``submit_update`` requests as one message each way (once)."""
    from nvflare.fuel.f3.cellnet.cell import Cell

    decode_in_context()
    if getattr(Cell.__dict__.get("send_request"), "flamby_flare_shim", False):
        return

    def dispatch(self, *args, **kwargs):  # NVFlare's own choice, made in Cell.__getattr__
        return Cell.__getattr__(self, "send_request")(*args, **kwargs)

    Cell.send_request = _send_server_command(dispatch)


def _then_notify(method, events: Events):
    @functools.wraps(method)
    def wrapped(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        finally:
            events.notify()

    wrapped.flamby_flare_shim = True
    return wrapped


def _held_request(try_to_get_task):
    """``ServerRunner._try_to_get_task``, waiting for a task (see the module docstring)."""

    @functools.wraps(try_to_get_task)
    def try_and_wait(self, client, fl_ctx, *args, **kwargs):
        global _held
        from nvflare.private.defs import SpecialTaskName

        deadline = time.monotonic() + HOLD_S
        held = False
        try:
            while True:
                seen = new_tasks.count
                answer = try_to_get_task(self, client, fl_ctx, *args, **kwargs)
                if answer[0] and answer[0] != SpecialTaskName.TRY_AGAIN:
                    return answer
                left = deadline - time.monotonic()
                if left <= 0 or self.status != "started" or self.abort_signal.triggered:
                    return answer
                if not held:
                    with _held_lock:
                        if _held >= MAX_HELD:
                            return answer
                        _held, held = _held + 1, True
                new_tasks.wait(seen, min(left, RECHECK_S))
        finally:
            if held:
                with _held_lock:
                    _held -= 1

    try_and_wait.flamby_flare_shim = True
    return try_and_wait


def _then_notify_if_a_task_ended(check_tasks):
    @functools.wraps(check_tasks)
    def wrapped(self, *args, **kwargs):
        standing = len(self._tasks)
        try:
            return check_tasks(self, *args, **kwargs)
        finally:
            if len(self._tasks) < standing:
                progress.notify()

    wrapped.flamby_flare_shim = True
    return wrapped


class WakeableTime:
    """The ``time`` module, whose ``sleep`` in ``WAKEABLE`` (the callers of a waiting loop) also ends at the next
    ``progress`` event."""

    WAKEABLE = ("_monitor_tasks", "wait_for_task")

    def __getattr__(self, name: str):
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        if sys._getframe(1).f_code.co_name not in self.WAKEABLE:
            time.sleep(seconds)
            return
        progress.wait(progress.count, seconds)


def hold_task_requests() -> None:
    """In the simulator's server process: task requests wait at the server for their task, and a task ends as
    soon as its last result is in (once)."""
    from nvflare.apis.impl import wf_comm_server
    from nvflare.private.fed.server.server_runner import ServerRunner

    decode_in_context()  # a site's result, sent as one message, may hold download references
    if getattr(ServerRunner._try_to_get_task, "flamby_flare_shim", False):
        return
    comm = wf_comm_server.WFCommServer
    comm._schedule_task = _then_notify(comm._schedule_task, new_tasks)
    comm.process_submission = _then_notify(comm.process_submission, progress)
    comm.check_tasks = _then_notify_if_a_task_ended(comm.check_tasks)
    wf_comm_server.time = WakeableTime()
    ServerRunner._try_to_get_task = _held_request(ServerRunner._try_to_get_task)

"""The simulator's request shim (``executors/simulator_requests.py``): a site's requests to the server as one
message each way, task requests held at the server until their task exists, and a round that ends as its last
result comes in. What it relies on in NVFlare is pinned here (and its modules' digests in
``tests/test_simulator_shim.py``); end to end, every simulator test runs through it."""

from __future__ import annotations

import importlib
import inspect
import re
import threading
import time

import pytest

from executors import simulator_requests as requests
from executors import simulator_shim
from tests.simulator import undo_request_shims


@pytest.fixture
def restored(monkeypatch):
    undo_request_shims(monkeypatch)


# ---- direct requests (a site) ---------------------------------------------------------------------------


class _CoreCell:
    def __init__(self):
        self.sent = []

    def get_fobs_context(self):
        return {}

    def send_request(self, **kwargs):
        self.sent.append(kwargs)
        return "reply"


class _Site:
    def __init__(self):
        self.core_cell = _CoreCell()


def _send(**kwargs):
    dispatched = []
    site = _Site()
    send = requests._send_server_command(lambda self, *args, **kw: dispatched.append((args, kw)) or "streamed")
    return send(site, **kwargs), site.core_cell.sent, dispatched


def test_a_sites_requests_to_the_server_go_as_one_message_each_way():
    from nvflare.apis.signal import Signal
    from nvflare.fuel.f3.cellnet.defs import CellChannel, MessageHeaderKey
    from nvflare.fuel.f3.cellnet.utils import new_cell_message

    # a plain dict, not a Shareable: serializing a Shareable in a process breaks its later NVFlare admin logins
    # (NVFlare 2.9, docs/deployment.md), and tests/test_poc.py may run in this one
    request = new_cell_message({}, {"x": 1})
    reply, sent, dispatched = _send(
        target="server.job",
        channel=CellChannel.SERVER_COMMAND,
        topic="get_task",
        request=request,
        timeout=300.0,
        optional=True,
        abort_signal=Signal(),
    )
    assert reply == "reply" and dispatched == []
    assert sent == [
        {
            "channel": CellChannel.SERVER_COMMAND,
            "topic": "get_task",
            "target": "server.job",
            "request": request,
            "timeout": 300.0,
            "secure": False,
            "optional": True,
        }
    ]
    # encoded first, so the size header NVFlare's Communicator logs is there (the streamed path sets it)
    assert request.get_header(MessageHeaderKey.PAYLOAD_LEN) > 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"target": "server.job", "channel": "aux_communication", "topic": "t", "request": None},  # another channel
        {"target": "server.job", "channel": "server_command", "topic": "t", "request": None, "progress_wait_cb": print},
    ],
)
def test_every_other_request_goes_as_nvflare_sends_it(kwargs):
    reply, sent, dispatched = _send(**kwargs)
    assert reply == "streamed" and sent == [] and dispatched == [((), kwargs)]


def test_nvflares_server_takes_a_stream_channels_request_as_a_plain_message_too():
    """What the direct path relies on: the server's cell registers every request callback with its core cell."""
    from nvflare.fuel.f3.cellnet.cell import Cell
    from nvflare.fuel.f3.cellnet.core_cell import CoreCell
    from nvflare.fuel.f3.cellnet.defs import CellChannel

    register = inspect.getsource(Cell._register_request_cb)
    core = register.index("self.core_cell.register_request_cb(channel, topic, cb, *args, **kwargs)")
    assert core < register.index("if _is_stream_channel(channel):")
    assert "def __getattr__(self, func):" in inspect.getsource(Cell)  # NVFlare's dispatch, which the shim keeps
    assert (
        CellChannel.SERVER_COMMAND not in importlib.import_module(requests.CELL_MODULE).CHANNELS_TO_EXCLUDE
    )  # streamed
    assert list(inspect.signature(CoreCell.send_request).parameters) == [
        "self",
        "channel",
        "topic",
        "target",
        "request",
        "timeout",
        "secure",
        "optional",
    ]


def test_nvflares_site_asks_with_exactly_the_arguments_the_direct_path_takes():
    from nvflare.private.fed.client.communicator import Communicator

    for method in (Communicator.pull_task, Communicator.submit_update):
        call = re.search(r"self\.cell\.send_request\((.*?)\n\s*\)", inspect.getsource(method), re.S).group(1)
        assert set(re.findall(r"(\w+)=", call)) <= requests._SEND_ARGUMENTS
        assert "channel=CellChannel.SERVER_COMMAND" in call
    assert "size = task_message.get_header(MessageHeaderKey.PAYLOAD_LEN)" in inspect.getsource(
        Communicator.submit_update
    )


def test_a_site_worker_gets_the_direct_path_once(restored):
    from nvflare.fuel.f3.cellnet.cell import Cell

    requests.direct_server_commands()
    patched = Cell.__dict__["send_request"]
    requests.direct_server_commands()
    assert Cell.__dict__["send_request"] is patched and patched.flamby_flare_shim


# ---- held task requests (the server) --------------------------------------------------------------------


class _Runner:
    """What the held request uses of NVFlare's ``ServerRunner``."""

    def __init__(self, ready_after: int | None):
        from nvflare.apis.signal import Signal

        self.status, self.abort_signal, self.tries, self.ready_after = "started", Signal(), 0, ready_after

    def try_to_get_task(self, client, fl_ctx):
        from nvflare.private.defs import SpecialTaskName

        self.tries += 1
        if self.ready_after is not None and self.tries > self.ready_after:
            return "train", "task-1", "data"
        return SpecialTaskName.TRY_AGAIN, "", None


def _ask(runner: _Runner):
    return requests._held_request(_Runner.try_to_get_task)(runner, "site-1", None)


def test_a_task_request_waits_for_its_task(monkeypatch):
    monkeypatch.setattr(requests, "HOLD_S", 30.0)
    runner = _Runner(ready_after=1)
    answers = []
    asker = threading.Thread(target=lambda: answers.append(_ask(runner)))
    asker.start()
    while runner.tries < 1:
        time.sleep(0.001)
    requests.new_tasks.notify()  # as the controller schedules the task
    asker.join(10)
    assert answers == [("train", "task-1", "data")]
    assert requests._held == 0


@pytest.mark.parametrize("how", ["time", "stopped", "aborted", "full"])
def test_without_a_task_it_answers_try_again_as_before(monkeypatch, how):
    from nvflare.private.defs import SpecialTaskName

    monkeypatch.setattr(requests, "HOLD_S", 0.05 if how == "time" else 30.0)
    runner = _Runner(ready_after=None)
    if how == "stopped":
        runner.status = "done"
    elif how == "aborted":
        runner.abort_signal.trigger(True)
    elif how == "full":
        monkeypatch.setattr(requests, "_held", requests.MAX_HELD)
    assert _ask(runner) == (SpecialTaskName.TRY_AGAIN, "", None)
    assert runner.tries >= 1 if how == "time" else runner.tries == 1


def test_the_server_looks_again_when_a_task_is_scheduled_or_ends_or_a_result_comes(restored):
    """Held requests when a task is scheduled; the task monitor and the controller when a result is processed or
    a task ends."""
    from nvflare.apis.impl import wf_comm_server
    from nvflare.private.fed.server.server_runner import ServerRunner

    requests.hold_task_requests()
    comm = wf_comm_server.WFCommServer
    assert all(
        getattr(comm.__dict__[name], "flamby_flare_shim", False)
        for name in ("_schedule_task", "process_submission", "check_tasks")
    )
    assert ServerRunner._try_to_get_task.flamby_flare_shim and isinstance(wf_comm_server.time, requests.WakeableTime)
    held = ServerRunner._try_to_get_task
    requests.hold_task_requests()
    assert ServerRunner._try_to_get_task is held  # once


def test_nvflares_task_request_is_what_the_hold_wraps():
    from nvflare.private.defs import SpecialTaskName
    from nvflare.private.fed.server.server_runner import ServerRunner

    process = inspect.getsource(ServerRunner.process_task_request)
    assert "task_name, task_id, task_data = self._try_to_get_task(" in process
    assert 'if self.status == "done":' in process and "self._task_try_again()" in process
    assert "if not task_name or task_name == SpecialTaskName.TRY_AGAIN:" in process
    attempt = inspect.getsource(ServerRunner._try_to_get_task)
    assert "with self.wf_lock:" in attempt and "if timeout is None or time.time() - start > timeout:" in attempt
    assert SpecialTaskName.TRY_AGAIN == "__try_again__"


def test_a_round_ends_as_its_last_result_comes_in():
    """wf_comm_server's two waiting loops are its only sleeps; a wakeable one ends at the next event."""
    from nvflare.apis.impl import wf_comm_server

    source = inspect.getsource(wf_comm_server)
    assert re.findall(r"time\.sleep\(([^)]*)\)", source) == ["self._task_check_period"] * 2
    for name in requests.WakeableTime.WAKEABLE:
        assert "time.sleep(self._task_check_period)" in inspect.getsource(getattr(wf_comm_server.WFCommServer, name))
    clock, ended = requests.WakeableTime(), []

    def wait_for_task():  # named as NVFlare's loop: its sleep is wakeable
        clock.sleep(30)
        ended.append(True)

    waiter = threading.Thread(target=wait_for_task)
    waiter.start()
    while not ended and waiter.is_alive():
        requests.progress.notify()  # as a result is processed
        time.sleep(0.01)
    waiter.join(10)
    assert ended == [True]
    assert clock.time is time.time


def test_a_site_worker_and_the_server_apply_it_only_on_the_nvflare_it_was_written_for(monkeypatch):
    import nvflare

    monkeypatch.setattr(nvflare, "__version__", "2.9.1")
    monkeypatch.setattr(simulator_shim, "_warned", set())
    assert simulator_shim._direct_requests() is False and simulator_shim._held_requests() is False
    assert requests.CELL_MODULE in simulator_shim._warned


def test_a_plain_message_decodes_in_its_receivers_context(restored, monkeypatch):
    """NVFlare's plain-message path decodes without a FOBS context, so an array sent as a download reference
    (the image jobs' arrays) could not be fetched; the shim decodes with the receiving cell's, as the streamed
    path does (an end-to-end run: tests/test_fed_synthetic.py, whose arrays travel so)."""
    from nvflare.fuel.f3.cellnet import core_cell
    from nvflare.fuel.f3.cellnet.defs import MessageHeaderKey
    from nvflare.fuel.f3.message import Message

    for method in (core_cell.CoreCell._process_request, core_cell.CoreCell._process_reply):
        assert "        decode_payload(message)\n" in inspect.getsource(method)
    contexts = []
    monkeypatch.setattr(core_cell, "decode_payload", lambda message, key="k", fobs_ctx=None: contexts.append(fobs_ctx))

    class Receiver:
        def get_fobs_context(self):
            return {"cell": "the receiver"}

    monkeypatch.setitem(core_cell.CoreCell.ALL_CELLS, "site-1.job", Receiver())
    requests.decode_in_context()
    requests.decode_in_context()  # once
    core_cell.decode_payload(Message({MessageHeaderKey.DESTINATION: "site-1.job"}, b""))
    core_cell.decode_payload(Message({MessageHeaderKey.DESTINATION: "elsewhere"}, b""))
    core_cell.decode_payload(Message({MessageHeaderKey.DESTINATION: "site-1.job"}, b""), "k", {"given": 1})
    assert contexts == [{"cell": "the receiver"}, None, {"given": 1}]

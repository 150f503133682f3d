"""Machines for a production test on one host: Linux network namespaces, one per participant.

``Network(tag, names)`` makes a namespace ``<tag>-<name>`` per participant and joins each to the server's
namespace by its own veth pair (a star: the server's namespace is the router of nothing, every link is a
point-to-point /30), so a participant reaches only the server, on the server's address on that link, and
its link can be cut alone. Each namespace gets its own ``/etc/hosts`` (``ip netns exec`` bind-mounts
``/etc/netns/<ns>/hosts``) naming the server as the kits do. Needs root and iproute2; nothing outside
the namespaces is touched but ``/etc/netns/<tag>-*``, removed by ``down``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

NETNS_ETC = Path("/etc/netns")


def available() -> str | None:
    """Why namespaces cannot be made here (None: they can)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if shutil.which("ip") is None:
        return "needs iproute2 (`ip`)"
    probe = f"ffprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None if made.returncode == 0 else f"`ip netns add` failed: {made.stderr.strip()}"


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


class Network:
    def __init__(self, tag: str, server_name: str, participants: list[str]):
        self.tag, self.server_name, self.participants = tag, server_name, participants
        self.server_ns = f"{tag}-server"
        self.procs: list[subprocess.Popen] = []

    def ns(self, participant: str) -> str:
        return f"{self.tag}-{participant.split('@')[0].replace('.', '_')}"

    def address(self, i: int, server_side: bool) -> str:
        return f"10.213.{i}.{1 if server_side else 2}"

    def up(self) -> "Network":
        _ip("netns", "add", self.server_ns)
        _ip("-n", self.server_ns, "link", "set", "lo", "up")
        self._hosts(self.server_ns, "127.0.0.1")
        for i, participant in enumerate(self.participants, start=1):
            ns = self.ns(participant)
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", self.server_ns, "link", "add", f"l{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("-n", self.server_ns, "addr", "add", f"{self.address(i, True)}/30", "dev", f"l{i}")
            _ip("-n", ns, "addr", "add", f"{self.address(i, False)}/30", "dev", "eth0")
            _ip("-n", self.server_ns, "link", "set", f"l{i}", "up")
            _ip("-n", ns, "link", "set", "eth0", "up")
            self._hosts(ns, self.address(i, True))
        return self

    def _hosts(self, ns: str, server_address: str) -> None:
        (NETNS_ETC / ns).mkdir(parents=True, exist_ok=True)
        (NETNS_ETC / ns / "hosts").write_text(f"127.0.0.1 localhost\n{server_address} {self.server_name}\n")

    def start(self, participant: str | None, cmd: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
        """Run ``cmd`` in ``participant``'s namespace (None: the server's), in its own process group."""
        ns = self.server_ns if participant is None else self.ns(participant)
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, *cmd],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def run(self, participant: str, cmd: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ip", "netns", "exec", self.ns(participant), *cmd],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def cut(self, participant: str) -> None:
        """Cut ``participant``'s link: its packets go nowhere (no reset, as when a cable or VPN drops)."""
        _ip("-n", self.ns(participant), "link", "set", "eth0", "down")

    @staticmethod
    def stop(proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()

    def down(self) -> None:
        for proc in self.procs:
            self.stop(proc)
        for ns in [self.server_ns, *(self.ns(p) for p in self.participants)]:
            for pid in subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            shutil.rmtree(NETNS_ETC / ns, ignore_errors=True)

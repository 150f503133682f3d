"""Peak memory of a group of processes while they run: per process (resident set), and for the group as a whole
(the sum of the processes' proportional set sizes, PSS, which counts a shared library's pages once over the
processes that map it, and the drop in the machine's MemAvailable).

    with MemorySampler(lambda cmdline: workspace in cmdline) as sampler:
        subprocess.run(...)
    sampler.peak_pss_mib, sampler.peak_rss_mib, sampler.per_process, sampler.per_process_pss

The group is the processes whose command line ``select`` accepts and all their descendants (the simulator's
site workers forked from its forkserver carry the forkserver's command line, not their own).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path


def _kib(path: Path, *fields: str) -> dict[str, int]:
    found = {}
    for line in path.read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in fields:
            found[name] = int(rest.split()[0])
    return found


def mem_available_mib() -> float:
    return _kib(Path("/proc/meminfo"), "MemAvailable")["MemAvailable"] / 1024


def _processes() -> dict[int, tuple[int, str]]:
    """Every process now: pid -> (parent pid, command line)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        found[int(entry.name)] = (parent, cmdline)
    return found


def simulator_role(cmdline: str, pid: int, workspace: str) -> str | None:
    """In a simulator run on ``workspace``: a site worker's site (``site-1``; a worker forked from the forkserver
    carries the forkserver's command line, and its site as its process name), ``forkserver``, ``resource_tracker``
    (multiprocessing's, beside the forkserver), or None (a server process)."""
    if "simulator_worker" in cmdline and "--client " in cmdline:
        return cmdline.split("--client ", 1)[1].split()[0]
    if "multiprocessing.resource_tracker" in cmdline:
        return "resource_tracker"
    if "multiprocessing.forkserver" in cmdline:
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            name = ""
        return name if name.startswith("site-") else "forkserver"
    return None


def poc_role(cmdline: str, kits: str) -> str | None:
    """In a POC whose startup kits are in ``kits``: ``site-1/job`` (a site's job process, NVFlare's
    ``worker_process``), ``site-1/client`` (its client daemon and start script), or None (server, admin)."""
    marker = kits.rstrip("/") + "/site-"
    if marker not in cmdline:
        return None
    site = "site-" + cmdline.split(marker, 1)[1].split("/", 1)[0].split()[0]
    return f"{site}/{'job' if 'worker_process' in cmdline else 'client'}"


class MemorySampler:
    """Samples every ``interval`` s the processes whose command line ``select`` accepts and their descendants
    (a label per process: ``label(cmdline, pid)`` or the pid). Reading /proc costs a few ms per process and
    sample: keep ``interval`` at 0.5 s or more when timing a run with tens of processes."""

    def __init__(
        self,
        select: Callable[[str], bool],
        label: Callable[[str, int], str | None] | None = None,
        interval: float = 0.5,
    ):
        self.select, self.label, self.interval = select, label, interval
        self.per_process: dict[str, float] = {}  # label -> peak RSS MiB
        self.per_process_pss: dict[str, float] = {}  # label -> peak PSS MiB (shared pages split between sharers)
        self.peak_rss_mib = self.peak_pss_mib = self.available_drop_mib = 0.0
        self.peak_processes = 0
        self._stop = threading.Event()

    def _group(self) -> dict[int, str]:
        """The group's processes now: pid -> command line."""
        processes = _processes()
        member: dict[int, bool] = {}

        def in_group(pid: int) -> bool:
            chain = []
            while pid in processes and pid not in member:
                chain.append(pid)
                if self.select(processes[pid][1]):
                    member[pid] = True
                    chain.pop()
                    break
                pid = processes[pid][0]
            verdict = member.get(pid, False)
            member.update(dict.fromkeys(chain, verdict))
            return verdict

        return {pid: cmdline for pid, (_, cmdline) in processes.items() if in_group(pid)}

    def _sample(self) -> None:
        rss_total = pss_total = 0.0
        count = 0
        for pid, cmdline in self._group().items():
            try:
                rollup = _kib(Path(f"/proc/{pid}/smaps_rollup"), "Rss", "Pss")
            except (OSError, KeyError, ValueError):
                continue
            rss, pss = rollup.get("Rss", 0) / 1024, rollup.get("Pss", 0) / 1024
            key = (self.label(cmdline, pid) if self.label else None) or str(pid)
            self.per_process[key] = max(self.per_process.get(key, 0.0), rss)
            self.per_process_pss[key] = max(self.per_process_pss.get(key, 0.0), pss)
            rss_total += rss
            pss_total += pss
            count += 1
        self.peak_rss_mib = max(self.peak_rss_mib, rss_total)
        self.peak_pss_mib = max(self.peak_pss_mib, pss_total)
        self.peak_processes = max(self.peak_processes, count)
        self.available_drop_mib = max(self.available_drop_mib, self._available_before - mem_available_mib())

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> "MemorySampler":
        self._available_before = mem_available_mib()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

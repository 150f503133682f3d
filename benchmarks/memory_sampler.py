"""Peak memory of a group of processes while they run: per process (resident set), and for the group as a whole
(the sum of the processes' proportional set sizes, PSS, which counts a shared library's pages once over the
processes that map it, and the drop in the machine's MemAvailable).

    with MemorySampler(lambda cmdline: workspace in cmdline) as sampler:
        subprocess.run(...)
    sampler.peak_pss_mib, sampler.peak_rss_mib, sampler.per_process
"""

from __future__ import annotations

import threading
import time
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


class MemorySampler:
    """Samples every ``interval`` s the processes whose command line ``select`` accepts (a label per process:
    ``label(cmdline)`` or the pid). Reading /proc costs a few ms per process and sample: keep ``interval``
    at 0.5 s or more when timing a run with tens of processes."""

    def __init__(self, select: Callable[[str], bool], label: Callable[[str], str | None] | None = None,
                 interval: float = 0.5):
        self.select, self.label, self.interval = select, label, interval
        self.per_process: dict[str, float] = {}  # label -> peak RSS MiB
        self.peak_rss_mib = self.peak_pss_mib = self.available_drop_mib = 0.0
        self.peak_processes = 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        rss_total = pss_total = 0.0
        count = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if not self.select(cmdline):
                    continue
                rollup = _kib(entry / "smaps_rollup", "Rss", "Pss")
            except (OSError, KeyError, ValueError):
                continue
            rss, pss = rollup.get("Rss", 0) / 1024, rollup.get("Pss", 0) / 1024
            key = (self.label(cmdline) if self.label else None) or entry.name
            self.per_process[key] = max(self.per_process.get(key, 0.0), rss)
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

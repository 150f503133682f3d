"""Will a run's processes fit this machine? Checked before they start, so that a run too large for the machine
is refused in one line instead of being killed by the kernel midway (``flamby-flare simulator``, ``flamby-flare
poc up``, the recipes' ``SimEnv``, ``benchmarks/scaling.py``).

The estimate is a floor, measured on this project's jobs (``benchmarks/scaling.py``, docs/results.md
"Scaling with the number of sites"): every site process (a simulator worker; in POC a site's client and its job
process) holds its own copy of what importing torch, NVFlare and the executor allocates
(``SITE_PROCESS_MIB``, private memory: a shared library's file pages are counted once, ``SHARED_MIB``), or,
forked from the simulator's forkserver, a fraction of it (``FORKED_SITE_PROCESS_MIB``), and the server its
own (``SERVER_MIB``). A dataset's data and model come on top, so a run that passes may still
need more; a run refused here cannot fit.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path

from flamby_flare.errors import FlambyFlareError

SITE_PROCESS_MIB = 400  # private memory (PSS) of one simulator site worker on Fed-Synthetic (torch 2.14 CUDA build + NVFlare + executor + data)
# the same for a worker forked from the simulator's forkserver (executors/simulator_forkserver.py): the imports'
# pages stay shared with the forkserver and every other worker (PSS: 133-142 MiB a site from 2 to 50 sites)
FORKED_SITE_PROCESS_MIB = 120
POC_CLIENT_MIB = 110  # a POC site's parent client process (NVFlare only), besides its job process
SERVER_MIB = 500  # the simulator's server (its parent and forked run process) or a POC server with its job
SHARED_MIB = 300  # file-backed library pages (libtorch, CUDA libraries), shared by every process
THREADS_PER_PROCESS = 40  # threads of a site worker (NVFlare's cell, torch's pool): what RLIMIT_NPROC counts


class CapacityError(FlambyFlareError):
    """The run's processes would not fit this machine's memory or process limit."""


@dataclass(frozen=True)
class Estimate:
    site_processes: int
    memory_mib: float
    threads: int

    @property
    def memory_gib(self) -> float:
        return self.memory_mib / 1024


def estimate(site_processes: int, poc: bool = False, forked: bool = False) -> Estimate:
    """The floor for ``site_processes`` live site processes and a server (``poc``: each site also has its
    client parent; ``forked``: simulator workers forked from its forkserver, ``executors/simulator_forkserver.py``)."""
    per_site = (FORKED_SITE_PROCESS_MIB if forked else SITE_PROCESS_MIB) + (POC_CLIENT_MIB if poc else 0)
    processes = site_processes * (2 if poc else 1) + 2 + (1 if forked else 0)  # forked: and the forkserver
    return Estimate(
        site_processes, SHARED_MIB + SERVER_MIB + site_processes * per_site, processes * THREADS_PER_PROCESS
    )


def available_mib() -> float | None:
    """MemAvailable of this machine (None where /proc/meminfo is not there)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _user_threads() -> int:
    """Threads this user runs now (what RLIMIT_NPROC counts), where /proc tells."""
    uid, count = os.getuid(), 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(entry / "task"))
            except OSError:
                continue
    return count


def check_capacity(
    site_processes: int, what: str, poc: bool = False, fewer: str = "-t", forked: bool = False
) -> Estimate:
    """The estimate for ``site_processes``, or a one-line ``CapacityError`` naming ``what`` when the machine
    cannot hold it (``fewer``: the option that lowers the number of processes)."""
    if isinstance(site_processes, bool) or not isinstance(site_processes, int) or site_processes < 1:
        raise CapacityError(f"{what}: the number of site processes must be an integer >= 1, got {site_processes!r}")
    need = estimate(site_processes, poc, forked)
    free = available_mib()
    if free is not None and need.memory_mib > free:
        fixed = estimate(0, poc, forked).memory_mib  # the server's, whatever the number of sites
        per_site = (need.memory_mib - fixed) / site_processes
        fits = max(0, int((free - fixed) // per_site))
        raise CapacityError(
            f"{what}: {site_processes} site processes need at least {need.memory_gib:.1f} GiB of memory and this machine has "
            f"{free / 1024:.1f} GiB available; {f'use {fewer} {fits} or fewer' if fits else 'free memory first'}"
            f" (docs/deployment.md, 'How many sites')"
        )
    soft, _ = resource.getrlimit(resource.RLIMIT_NPROC)
    running = _user_threads() if soft != resource.RLIM_INFINITY else 0  # one /proc scan, only when limited
    if soft != resource.RLIM_INFINITY and need.threads + running > soft:
        raise CapacityError(
            f"{what}: {site_processes} site processes start about {need.threads} threads and this user may run {soft} "
            f"(ulimit -u) with {running} running; raise the limit or use {fewer} with fewer processes"
        )
    return need

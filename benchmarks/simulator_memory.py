"""Peak resident memory of a simulator run, per process: the server (``nvflare simulator`` and its forked
run process), the forkserver and each site's worker; and of the whole run, as the sum of RSS (which counts the
pages forked workers share once per worker), of PSS (each shared page once), and the drop in MemAvailable.
Samples /proc every 0.1 s while the job runs.

Usage: python benchmarks/simulator_memory.py [--job jobs/fed_heart_disease_fedavg] [--threads 4] [--data-root DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from memory_sampler import MemorySampler, simulator_role

from flamby_flare.simulator import prepare_workspace

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", type=Path, default=REPO / "jobs" / "fed_heart_disease_fedavg")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--data-root", help="FLAMBY_FLARE_DATA for the sites (default: the environment's)")
    args = parser.parse_args()
    workspace = tempfile.mkdtemp(prefix="flamby_memory_")
    env = {**os.environ, "OMP_NUM_THREADS": "1", **({"FLAMBY_FLARE_DATA": args.data_root} if args.data_root else {})}
    prepare_workspace(workspace)
    cmd = [
        str(Path(sys.executable).with_name("nvflare")),
        "simulator",
        str(args.job),
        "-w",
        workspace,
        "-t",
        str(args.threads),
    ]
    with MemorySampler(
        lambda c: workspace in c, lambda c, pid: simulator_role(c, pid, workspace), interval=0.1
    ) as memory:
        proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    peak = {k if not k.isdigit() else f"server[{k}]": v for k, v in memory.per_process.items()}
    total_peak = memory.peak_rss_mib
    servers = sorted((v for k, v in peak.items() if k.startswith("server")), reverse=True)
    result = {
        "job": str(args.job.relative_to(REPO)) if args.job.is_relative_to(REPO) else str(args.job),
        "threads": args.threads,
        "rc": proc.returncode,
        "peak_rss_mib": {
            "server processes": [round(v) for v in servers],
            **{k: round(v) for k, v in sorted(peak.items()) if not k.startswith("server")},
        },
        "peak_pss_mib": {k: round(v) for k, v in sorted(memory.per_process_pss.items()) if not k.isdigit()},
        "peak_total_rss_mib": round(total_peak),
        "peak_total_pss_mib": round(memory.peak_pss_mib),
        "memavailable_drop_mib": round(memory.available_drop_mib),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""Peak resident memory of a simulator run, per process: the server (``nvflare simulator`` and its forked
run process) and each site's worker. Samples /proc every 0.1 s while the job runs.

Usage: python benchmarks/simulator_memory.py [--job jobs/fed_heart_disease_fedavg] [--threads 4] [--data-root DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flamby_flare.simulator import prepare_workspace

REPO = Path(__file__).resolve().parents[1]


def _rss_mib(pid: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _role(cmdline: str, workspace: str) -> str | None:
    if workspace not in cmdline:
        return None
    if "simulator_worker" in cmdline:
        return cmdline.split("--client ", 1)[1].split()[0]
    return "server" if "simulator" in cmdline else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", type=Path, default=REPO / "jobs" / "fed_heart_disease_fedavg")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--data-root", help="FLAMBY_FLARE_DATA for the sites (default: the environment's)")
    args = parser.parse_args()
    workspace = tempfile.mkdtemp(prefix="flamby_memory_")
    env = {**os.environ, "OMP_NUM_THREADS": "1", **({"FLAMBY_FLARE_DATA": args.data_root} if args.data_root else {})}
    prepare_workspace(workspace)
    cmd = [str(Path(sys.executable).with_name("nvflare")), "simulator", str(args.job), "-w", workspace, "-t", str(args.threads)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    peak: dict[str, float] = {}
    total_peak = 0.0
    while proc.poll() is None:
        total = 0.0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                role = _role((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"), workspace)
                if role is None:
                    continue
                rss = _rss_mib(entry.name)
            except OSError:
                continue
            key = role if role != "server" else f"server[{entry.name}]"
            peak[key] = max(peak.get(key, 0.0), rss)
            total += rss
        total_peak = max(total_peak, total)
        time.sleep(0.1)
    servers = sorted((v for k, v in peak.items() if k.startswith("server")), reverse=True)
    result = {"job": str(args.job.relative_to(REPO)) if args.job.is_relative_to(REPO) else str(args.job), "threads": args.threads,
              "rc": proc.returncode, "peak_rss_mib": {"server processes": [round(v) for v in servers],
              **{k: round(v) for k, v in sorted(peak.items()) if not k.startswith("server")}},
              "peak_total_rss_mib": round(total_peak)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

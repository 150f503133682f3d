"""Where the time of a Fed-Heart-Disease FedAvg simulator run goes: start-up, per-round overhead, compute.

Runs jobs/fed_heart_disease_fedavg (FLamby settings: 4 sites, 15 rounds x 100 updates) in NVFlare's
simulator, once with NVFlare's stock polling (server task_request_interval 2 s, site task fetch 0.5 s,
the WFCommServer's effective 0.2 s task check) and once with the job's tuned settings, and reports:
  total       wall time of `nvflare simulator`, process start to exit
  start-up    total minus the controller's run (process start, site start-up, shutdown)
  round 1     the first round (includes each site's dataset load)
  overhead    mean over rounds 2.. of (round wall time - slowest site's local compute)
Usage: python benchmarks/simulator_overhead.py [--threads 4] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from flamby_flare.jobs import job_files, write_files  # noqa: E402
from flamby_flare.simulator import prepare_workspace  # noqa: E402

STOCK = {"task_request_interval": 2.0, "task_fetch_interval": 0.5, "task_check_period": 0.2}


def write_job(root: Path, stock: bool) -> Path:
    """The heart FedAvg job, as shipped or with NVFlare's stock polling."""
    files = job_files(
        "fed_heart_disease", "fedavg", **({"task_check_period": STOCK["task_check_period"]} if stock else {})
    )
    if stock:
        server = json.loads(files["app/config/config_fed_server.json"])
        server["server"]["task_request_interval"] = STOCK["task_request_interval"]
        client = json.loads(files["app/config/config_fed_client.json"])
        client["default_task_fetch_interval"] = STOCK["task_fetch_interval"]
        files["app/config/config_fed_server.json"] = json.dumps(server, indent=2)
        files["app/config/config_fed_client.json"] = json.dumps(client, indent=2)
    return write_files(root / ("stock" if stock else "tuned") / "fed_heart_disease_fedavg", files)


def run(job: Path, workspace: Path, threads: int) -> dict:
    nvflare = Path(sys.executable).with_name("nvflare")
    prepare_workspace(workspace)
    start = time.monotonic()
    proc = subprocess.run(
        [str(nvflare), "simulator", str(job), "-w", str(workspace), "-t", str(threads)],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    total = time.monotonic() - start
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        raise SystemExit(f"simulator failed (rc={proc.returncode}): {last}")
    summary = json.loads((workspace / "server" / "simulate_job" / "summary.json").read_text())
    rounds = summary["history"]
    overheads = [r["wall_s"] - max(r["site_compute_s"].values()) for r in rounds[1:]]
    return {
        "total_s": total,
        "startup_s": total - summary["wall_time_s"],
        "round1_s": rounds[0]["wall_s"],
        "round_s": statistics.mean(r["wall_s"] for r in rounds[1:]),
        "compute_s": statistics.mean(max(r["site_compute_s"].values()) for r in rounds[1:]),
        "overhead_s": statistics.mean(overheads),
        "mean_accuracy": summary["mean"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=4, help="simulator -t (site processes)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for stock in (True, False):
            label = "stock NVFlare polling" if stock else "tuned (this job)"
            job = write_job(Path(tmp), stock)
            rows[label] = run(job, Path(tmp) / f"ws_{'stock' if stock else 'tuned'}", args.threads)
            print(label, {k: round(v, 3) for k, v in rows[label].items()}, flush=True)
    header = "| settings | total s | start-up s | round 1 s | round s | site compute s | overhead/round s | accuracy |"
    lines = [
        f"Fed-Heart-Disease FedAvg, 4 sites, 15 rounds x 100 updates, `-t {args.threads}`",
        "",
        header,
        "|---" * 8 + "|",
    ]
    for label, r in rows.items():
        lines.append(
            f"| {label} | {r['total_s']:.1f} | {r['startup_s']:.1f} | {r['round1_s']:.2f} | {r['round_s']:.3f} | "
            f"{r['compute_s']:.3f} | {r['overhead_s']:.3f} | {r['mean_accuracy']:.4f} |"
        )
    report = "\n".join(lines)
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"simulator_overhead_t{args.threads}.md").write_text(report + "\n")


if __name__ == "__main__":
    main()

"""Wall time of jobs/fed_heart_disease_fedavg (4 sites, 15 rounds x 100 updates) in POC mode against the
simulator, on this machine, and whether both give the same numbers.

  POC up      `flamby-flare poc up --sites 4` until all four sites are connected
  POC job     submit to finished and downloaded (admin API), per run
  simulator   `nvflare simulator -t 4`, process start to exit, per run
  controller  the controller's own wall time (summary.json `wall_time_s`): rounds and validation
Usage: python benchmarks/poc_vs_simulator.py [--runs 3] [--mirror ../shared/mirror] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from flamby_flare.datasets import get_dataset  # noqa: E402
from flamby_flare.download import download  # noqa: E402
from flamby_flare.poc import Poc  # noqa: E402
from tests.simulator import run_dir, run_simulator  # noqa: E402

JOB = REPO / "jobs" / "fed_heart_disease_fedavg"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--mirror", default=os.environ.get("FLAMBY_FLARE_MIRROR") or str(REPO.parent / "shared" / "mirror")
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="poc_bench_"))
    os.environ["HOME"] = str(tmp / "home")  # nvflare poc writes ~/.nvflare
    data_root = tmp / "data"
    download(get_dataset("fed_heart_disease").SOURCE, data_root=data_root, mirror=args.mirror, log=lambda _: None)

    sim, sim_ctl, sim_means = [], [], []
    for i in range(args.runs):
        ws = tmp / f"sim{i}"
        start = time.perf_counter()
        proc = run_simulator(
            JOB, ws, 4, {"FLAMBY_FLARE_DATA": str(data_root), "FLAMBY_FLARE_STATE": str(tmp / "state")}
        )
        sim.append(time.perf_counter() - start)
        assert proc.returncode == 0, proc.stderr[-2000:]
        summary = json.loads((run_dir(ws) / "summary.json").read_text())
        sim_ctl.append(summary["wall_time_s"])
        sim_means.append(summary["mean"])

    poc = Poc(tmp / "poc")
    try:
        start = time.perf_counter()
        poc.prepare(4)
        poc.provision_data(["fed_heart_disease"], args.mirror, log=lambda _: None)
        poc.start()
        up = time.perf_counter() - start
        jobs, poc_ctl, poc_means = [], [], []
        for _ in range(args.runs):
            outcome = poc.run_job(JOB, timeout=600, out=tmp / "results")
            assert outcome.ok, outcome.reason
            summary = json.loads((outcome.result_dir / "workspace" / "summary.json").read_text())
            jobs.append(outcome.seconds)
            poc_ctl.append(summary["wall_time_s"])
            poc_means.append(summary["mean"])
    finally:
        poc.stop()

    med = statistics.median
    report = {
        "runs": args.runs,
        "poc_up_s": round(up, 1),
        "poc_job_s": [round(x, 1) for x in jobs],
        "poc_controller_s": poc_ctl,
        "simulator_s": [round(x, 1) for x in sim],
        "simulator_controller_s": sim_ctl,
        "same_mean_accuracy": len(set(poc_means + sim_means)) == 1,
        "mean_accuracy": poc_means[0],
    }
    print(f"POC up (prepare, data, start until 4/4 sites):   {up:6.1f} s")
    print(
        f"POC job, submit to downloaded (median of {args.runs}):   {med(jobs):6.1f} s   controller {med(poc_ctl):5.1f} s"
    )
    print(f"simulator -t 4, process start to exit (median):  {med(sim):6.1f} s   controller {med(sim_ctl):5.1f} s")
    print(
        f"mean accuracy: POC {poc_means[0]:.4f}, simulator {sim_means[0]:.4f}, identical: {report['same_mean_accuracy']}"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "poc_vs_simulator.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

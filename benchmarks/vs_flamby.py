"""This project against FLamby itself (the peer in ../shared/peer), on the same machine, alternating:

- FLamby's Listing 1 on Fed-Heart-Disease (``benchmarks/listing1.py --impl flamby``, the peer venv), whole process;
- the same code on this project's in-process API (``--impl ours``), whole process;
- the main job in NVFlare's simulator (``nvflare simulator jobs/fed_heart_disease_fedavg -t 4`` on a workspace
  prepared by ``flamby-flare site-policy``), whole process; and the same with its site workers started as
  NVFlare starts them, each a new Python (``FLAMBY_FLARE_SIMULATOR_FORK=0``), the before of issue 19's fork.

Reports each run's wall time, the medians and the ratios to FLamby's median, and, for FedAvg and the
strategies of ``--compare``, whether the per-site accuracies of ours equal FLamby's.
Usage: python benchmarks/vs_flamby.py [--repeats 5] [--peer-venv /tmp/flamby_venv] [--compare fedprox fedyogi]
       [--out benchmarks/results/vs_flamby.json]
The peer is built by ../shared/peer/setup_flamby.sh (minutes the first time).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from process_timing import timed

from flamby_flare.simulator import prepare_workspace

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def per_site(output: str) -> list[float]:
    return next(json.loads(line) for line in output.splitlines() if line.startswith("{"))["per_site"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--peer-venv", type=Path, default=Path(tempfile.gettempdir()) / "flamby_venv")
    parser.add_argument("--mirror", type=Path, default=SHARED / "mirror")
    parser.add_argument("--compare", nargs="*", default=["fedprox", "fedyogi"])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "vs_flamby.json")
    args = parser.parse_args()

    subprocess.run(
        ["bash", str(SHARED / "peer" / "setup_flamby.sh"), str(args.peer_venv), str(args.mirror)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    work = Path(tempfile.mkdtemp(prefix="vs_flamby_"))
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "FLAMBY_FLARE_DATA": str(work / "data"),
        "FLAMBY_FLARE_STATE": str(work / "state"),
    }
    python, peer = sys.executable, str(args.peer_venv / "bin" / "python")
    subprocess.run(
        [str(Path(python).with_name("flamby-flare")), "download", "fed_heart_disease", "--mirror", str(args.mirror)],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    listing = str(REPO / "benchmarks" / "listing1.py")
    prepare_workspace(work / "ws")  # the site policy admitting our classes (what `flamby-flare simulator` does)
    runs = {
        "flamby_in_process": [peer, listing, "--impl", "flamby", "--strategy", "fedavg"],
        "ours_in_process": [python, listing, "--impl", "ours", "--strategy", "fedavg"],
        "ours_nvflare_t4": [
            str(Path(python).with_name("nvflare")),
            "simulator",
            str(REPO / "jobs" / "fed_heart_disease_fedavg"),
            "-w",
            str(work / "ws"),
            "-t",
            "4",
        ],
    }
    runs["ours_nvflare_t4_unforked"] = runs["ours_nvflare_t4"]
    run_env = {name: env for name in runs} | {"ours_nvflare_t4_unforked": {**env, "FLAMBY_FLARE_SIMULATOR_FORK": "0"}}
    times: dict[str, list[float]] = {name: [] for name in runs}
    outputs: dict[str, str] = {}
    for i in range(args.repeats):
        for name, cmd in runs.items():  # alternated: the machine's load hits all three alike
            seconds, outputs[name] = timed(cmd, run_env[name])
            times[name].append(round(seconds, 2))
            print(f"[{i + 1}/{args.repeats}] {name}: {seconds:.2f} s", flush=True)
    medians = {name: statistics.median(t) for name, t in times.items()}
    result = {
        "repeats": args.repeats,
        "times_s": times,
        "median_s": medians,
        "ratio_to_flamby": {name: round(m / medians["flamby_in_process"], 3) for name, m in medians.items()},
        "accuracy": {},
    }
    sim_summary = json.loads((work / "ws" / "server" / "simulate_job" / "summary.json").read_text())
    result["accuracy"]["fedavg"] = {
        "flamby": per_site(outputs["flamby_in_process"]),
        "ours": per_site(outputs["ours_in_process"]),
        "ours_nvflare": list(sim_summary["per_site"].values()),
    }
    for strategy in args.compare:
        flamby = per_site(timed([peer, listing, "--impl", "flamby", "--strategy", strategy], env)[1])
        ours = per_site(timed([python, listing, "--impl", "ours", "--strategy", strategy], env)[1])
        result["accuracy"][strategy] = {"flamby": flamby, "ours": ours}
    for acc in result["accuracy"].values():
        acc["equal"] = acc["flamby"] == acc["ours"] and acc.get("ours_nvflare", acc["ours"]) == acc["ours"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("median_s", "ratio_to_flamby")}, indent=2))
    for strategy, acc in result["accuracy"].items():
        print(f"{strategy}: per-site equal to FLamby's: {acc['equal']}  (FLamby {acc['flamby']}, ours {acc['ours']})")


if __name__ == "__main__":
    main()

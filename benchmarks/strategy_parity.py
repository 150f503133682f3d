"""Every strategy through `nvflare simulator` over seeds, against FLamby's published numbers.

Runs jobs/<dataset>_<strategy> for each seed (FLAMBY_FLARE_SEED), `-t <sites>`, skipping runs whose
summary.json already exists under --work, then prints the table: ours (mean ± sd over seeds of the mean
over sites), FLamby's, the difference, and whether ours lies in FLamby's band mean ± max(sd, 0.02).
Usage: python benchmarks/strategy_parity.py --datasets fed_heart_disease fed_tcga_brca --work /tmp/sweep
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from flamby_flare.datasets import get_constants  # noqa: E402
from flamby_flare.hyperparameters import STRATEGIES  # noqa: E402
from flamby_flare.reference import reference_stats  # noqa: E402

METHOD = {"fedavg": "FedAvg100", "fedprox": "FedProx100", "scaffold": "Scaffold100", "cyclic": "Cyclic100",
          "fedadam": "FedAdam100", "fedyogi": "FedYogi100", "fedadagrad": "FedAdagrad100"}


def run(dataset: str, strategy: str, seed: int, work: Path) -> dict:
    ws = work / f"{dataset}_{strategy}_s{seed}"
    summary = ws / "server" / "simulate_job" / "summary.json"
    if not summary.is_file():
        sites = get_constants(dataset).NUM_CLIENTS
        nvflare = Path(sys.executable).with_name("nvflare")
        env = {**os.environ, "FLAMBY_FLARE_SEED": str(seed), "OMP_NUM_THREADS": "1"}
        with open(f"{ws}.log", "w") as log:
            subprocess.run([str(nvflare), "simulator", str(REPO / "jobs" / f"{dataset}_{strategy}"), "-w", str(ws),
                            "-t", str(sites)], env=env, stdout=log, stderr=subprocess.STDOUT, timeout=1800, check=True)
    return json.loads(summary.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["fed_heart_disease", "fed_tcga_brca"])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44, 45, 46])
    parser.add_argument("--work", type=Path, required=True, help="folder for the simulator workspaces")
    parser.add_argument("--reference", type=Path, default=REPO.parent / "shared" / "reference")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    lines = ["| dataset | strategy | ours (per seed) | ours mean ± sd | FLamby mean ± sd | difference | in band |",
             "|---|---|---|---|---|---|---|"]
    for dataset in args.datasets:
        ref = reference_stats(args.reference, dataset)
        for strategy in args.strategies:
            means = [run(dataset, strategy, seed, args.work)["mean"] for seed in args.seeds]
            ours, sd = statistics.mean(means), statistics.stdev(means) if len(means) > 1 else 0.0
            r = ref.loc[METHOD[strategy]]
            diff = ours - r["mean"]
            band = max(r["sd"], 0.02)
            verdict = "yes" if abs(diff) <= band else "no"
            lines.append(f"| {dataset} | {strategy} | {' '.join(f'{m:.3f}' for m in means)} | {ours:.3f} ± {sd:.3f} | "
                         f"{r['mean']:.3f} ± {r['sd']:.3f} | {diff:+.3f} | {verdict} |")
            print(lines[-1], flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()

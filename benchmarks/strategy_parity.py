"""Every strategy as its own `nvflare simulator jobs/<dataset>_<strategy>` run, over seeds, against FLamby.

The literal check of issue 3: each cell is the committed job run alone (`-t <sites>`, FLAMBY_FLARE_SEED),
skipped when its summary.json already exists under --work; the table (ours vs FLamby, difference, band)
comes from `flamby_flare.benchmark.report`. `flamby-flare benchmark` gives the same numbers faster.
Usage: python benchmarks/strategy_parity.py --work /tmp/sweep [--datasets ...] [--strategies ...] [--seeds ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from flamby_flare.benchmark.report import compare, summarize, to_markdown  # noqa: E402
from flamby_flare.datasets import get_constants  # noqa: E402
from flamby_flare.hyperparameters import STRATEGIES  # noqa: E402
from flamby_flare.simulator import prepare_workspace  # noqa: E402
from flamby_flare.strategies.base import method_label as flamby_method  # noqa: E402


def run(dataset: str, strategy: str, seed: int, work: Path) -> dict:
    ws = work / f"{dataset}_{strategy}_s{seed}"
    summary = ws / "server" / "simulate_job" / "summary.json"
    if not summary.is_file():
        sites = get_constants(dataset).NUM_CLIENTS
        nvflare = Path(sys.executable).with_name("nvflare")
        env = {**os.environ, "FLAMBY_FLARE_SEED": str(seed), "OMP_NUM_THREADS": "1"}
        prepare_workspace(ws)
        with open(f"{ws}.log", "w") as log:
            subprocess.run(
                [
                    str(nvflare),
                    "simulator",
                    str(REPO / "jobs" / f"{dataset}_{strategy}"),
                    "-w",
                    str(ws),
                    "-t",
                    str(sites),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=1800,
                check=True,
            )
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
    tables = []
    for dataset in args.datasets:
        rows = []
        for strategy in args.strategies:
            for seed in args.seeds:
                summary = run(dataset, strategy, seed, args.work)
                status = "diverged" if summary.get("diverged_at_round") else "ok"
                rows += [
                    {
                        "Test": f"client_test_{i}",
                        "Method": flamby_method(strategy),
                        "Metric": v,
                        "seed": seed,
                        "status": status,
                    }
                    for i, v in enumerate(summary["per_site"].values())
                ]
        tables.append(compare(dataset, summarize(pd.DataFrame(rows)), args.reference))
    print(to_markdown(pd.concat(tables)))


if __name__ == "__main__":
    main()

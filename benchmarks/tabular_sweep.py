"""Time the full tabular sweep: Fed-Heart-Disease and Fed-TCGA-BRCA, 5 seeds, pooled, locals, 7 strategies.

Runs `flamby-flare benchmark` for both datasets into a fresh folder, then `flamby-flare report`, and prints
the wall time per dataset and where it went (central baselines vs federated cells, per-cell means).
Usage: python benchmarks/tabular_sweep.py --out /tmp/tabular [--jobs 1] (data: FLAMBY_FLARE_DATA)
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--reference", type=Path)
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    cli = [sys.executable, "-m", "flamby_flare.cli"]
    lines = ["| dataset | wall s | central cells (n, total s) | federated cells (n, mean s) |", "|---|---|---|---|"]
    total = 0.0
    for dataset in ("fed_heart_disease", "fed_tcga_brca"):
        start = time.monotonic()
        subprocess.run(
            cli + ["benchmark", "--dataset", dataset, "--out", str(args.out), "--jobs", str(args.jobs)], check=True
        )
        wall = time.monotonic() - start
        total += wall
        cells = pd.read_csv(args.out / dataset / "results.csv").drop_duplicates(["Method", "seed"])
        central = cells[cells["Method"].str.match(r"^(Pooled|Local)")]
        federated = cells.drop(central.index)
        lines.append(
            f"| {dataset} | {wall:.0f} | {len(central)}, {central['wall_time_s'].sum():.0f} | "
            f"{len(federated)}, {federated['wall_time_s'].mean():.1f} |"
        )
    lines.append(f"| total | {total:.0f} | | |")
    report = ["report", str(args.out)] + (["--reference", str(args.reference)] if args.reference else [])
    subprocess.run(cli + report, check=True, stdout=subprocess.DEVNULL)
    print("\n".join(lines))
    (args.out / "timing.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

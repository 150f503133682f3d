"""One seed of the tabular benchmark (pooled, the locals, the 7 strategies), ours against FLamby's own.

FLamby: ``flamby/benchmarks/fed_benchmark.py --seed S -cfp flamby/config_<dataset>.json --cpu-only`` in the
peer venv (../shared/peer/setup_flamby.sh), one process. Ours: ``flamby-flare benchmark --dataset D --seed S``
(the federated cells as NVFlare simulator jobs). Alternated, whole processes; reports each run's wall time,
the medians, ours/FLamby, and how far our per-(method, test) metrics lie from FLamby's for the same seed.
Usage: python benchmarks/one_seed_vs_flamby.py [--datasets fed_heart_disease fed_tcga_brca] [--repeats 3]
       [--seed 42] [--jobs N] [--peer-venv /tmp/flamby_venv] [--out benchmarks/results/one_seed_vs_flamby.json]
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

import pandas as pd
from process_timing import timed

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CONFIGS = {"fed_heart_disease": "config_heart_disease.json", "fed_tcga_brca": "config_tcga_brca.json"}


def metric_gap(flamby_csv: Path, ours_csv: Path, seed: int) -> dict:
    """Cells present in both (same Method and Test) and the largest |ours - FLamby| among them."""
    keys = ["Method", "Test"]
    flamby = pd.read_csv(flamby_csv).query("seed == @seed")[keys + ["Metric"]]
    ours = pd.read_csv(ours_csv).query("seed == @seed")[keys + ["Metric"]]
    both = flamby.astype({"Test": str}).merge(ours.astype({"Test": str}), on=keys, suffixes=("_flamby", "_ours"))
    gap = (both["Metric_ours"] - both["Metric_flamby"]).abs()
    return {
        "cells_compared": len(both),
        "cells_flamby": len(flamby),
        "max_abs_diff": round(float(gap.max()), 4) if len(both) else None,
        "methods": sorted(both["Method"].unique().tolist()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--jobs", type=int, help="ours: cells at a time (default: flamby-flare benchmark's, cores / 2)")
    parser.add_argument("--peer-venv", type=Path, default=Path(tempfile.gettempdir()) / "flamby_venv")
    parser.add_argument("--mirror", type=Path, default=SHARED / "mirror")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "one_seed_vs_flamby.json")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.jobs is not None and args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")

    subprocess.run(
        ["bash", str(SHARED / "peer" / "setup_flamby.sh"), str(args.peer_venv), str(args.mirror)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    work = Path(tempfile.mkdtemp(prefix="one_seed_"))
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "FLAMBY_FLARE_DATA": str(work / "data"),
        "FLAMBY_FLARE_STATE": str(work / "state"),
    }
    cli = str(Path(sys.executable).with_name("flamby-flare"))
    peer_python, peer_src = str(args.peer_venv / "bin" / "python"), args.peer_venv / "src" / "FLamby"
    result: dict = {"seed": args.seed, "repeats": args.repeats, "jobs": args.jobs, "datasets": {}}
    for dataset in args.datasets:
        subprocess.run(
            [cli, "download", dataset, "--mirror", str(args.mirror)], env=env, check=True, stdout=subprocess.DEVNULL
        )
        times: dict[str, list[float]] = {"flamby": [], "ours": []}
        for i in range(args.repeats):  # alternated: the machine's load hits both alike
            flamby_csv = work / f"{dataset}_flamby_{i}.csv"
            times["flamby"].append(
                round(
                    timed(
                        [
                            peer_python,
                            "flamby/benchmarks/fed_benchmark.py",
                            "--seed",
                            str(args.seed),
                            "-cfp",
                            f"flamby/{CONFIGS[dataset]}",
                            "--cpu-only",
                            "--results-file-path",
                            str(flamby_csv),
                        ],
                        env,
                        cwd=peer_src,
                        stdin="y\n" * 20,
                    )[0],
                    2,
                )
            )
            ours_dir = work / f"{dataset}_ours_{i}"
            times["ours"].append(
                round(
                    timed(
                        [
                            cli,
                            "benchmark",
                            "--dataset",
                            dataset,
                            "--seed",
                            str(args.seed),
                            "--out",
                            str(ours_dir),
                            *(["--jobs", str(args.jobs)] if args.jobs else []),
                        ],
                        env,
                    )[0],
                    2,
                )
            )
            print(
                f"[{dataset} {i + 1}/{args.repeats}] FLamby {times['flamby'][-1]:.1f} s, ours {times['ours'][-1]:.1f} s",
                flush=True,
            )
        medians = {name: statistics.median(t) for name, t in times.items()}
        result["datasets"][dataset] = {
            "times_s": times,
            "median_s": medians,
            "ratio_ours_to_flamby": round(medians["ours"] / medians["flamby"], 3),
            "metrics": metric_gap(flamby_csv, ours_dir / dataset / "results.csv", args.seed),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for dataset, r in result["datasets"].items():
        print(
            f"{dataset}: FLamby {r['median_s']['flamby']:.1f} s, ours {r['median_s']['ours']:.1f} s, "
            f"ratio {r['ratio_ours_to_flamby']:.3f}; metrics {r['metrics']}"
        )


if __name__ == "__main__":
    main()

"""The ``flamby-flare`` command line: ``download``, ``benchmark``, ``report``, ``results``, ``jobs``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from flamby_flare.errors import FlambyFlareError


def _download(args: argparse.Namespace) -> None:
    from flamby_flare.datasets import get_dataset
    from flamby_flare.download import download

    download(get_dataset(args.dataset).SOURCE, data_root=args.data_root, mirror=args.mirror)


def _results(args: argparse.Namespace) -> None:
    from flamby_flare.results import find_summaries, format_table

    for i, path in enumerate(find_summaries(args.path)):
        print(("\n" if i else "") + f"{path}\n" + format_table(json.loads(path.read_text())))


def _benchmark(args: argparse.Namespace) -> None:
    from flamby_flare.benchmark.runner import run_benchmark

    run_benchmark(args.dataset, args.seeds, args.strategies, args.out, jobs=args.jobs, data_root=args.data_root)


def _report(args: argparse.Namespace) -> None:
    from flamby_flare.benchmark.report import write_report

    paths = write_report(args.results_dir, args.reference)
    print(paths["md"].read_text())
    print("written: " + ", ".join(str(p) for p in paths.values()))


def _jobs(args: argparse.Namespace) -> None:
    from flamby_flare.datasets import get_constants
    from flamby_flare.jobs import all_jobs, write_job

    for name in args.dataset or []:
        get_constants(name)  # unknown names fail here, with the list of known ones
    chosen = [(d, s) for d, s in all_jobs() if (not args.dataset or d in args.dataset) and (not args.strategy or s in args.strategy)]
    for dataset, strategy in chosen:
        folder = write_job(dataset, strategy, args.out, seed=args.seed, num_rounds=args.rounds, data_root=args.data_root)
        print(folder)


def build_parser() -> argparse.ArgumentParser:
    from flamby_flare.hyperparameters import STRATEGIES

    parser = argparse.ArgumentParser(prog="flamby-flare", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("download", help="fetch and verify a dataset's raw files")
    p.add_argument("dataset", help="e.g. fed_heart_disease, fed_tcga_brca")
    p.add_argument("--data-root", help="data root (default: $FLAMBY_FLARE_DATA, else ~/.cache/flamby_flare)")
    p.add_argument("--mirror", help="take the files from this local folder (<mirror>/<dataset>/<file>) "
                   "instead of the network (default: $FLAMBY_FLARE_MIRROR)")
    p.set_defaults(func=_download)

    p = sub.add_parser("benchmark", help="FLamby's benchmark for one dataset: pooled, locals, strategies, over seeds")
    p.add_argument("--dataset", required=True)
    p.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44, 45, 46])
    p.add_argument("--strategies", nargs="*", default=list(STRATEGIES), choices=STRATEGIES,
                   help="strategies to run (default: all seven; none: only the pooled and local baselines)")
    p.add_argument("--out", type=Path, default=Path("results"), help="results folder (default: ./results)")
    p.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2) // 2), help="cells at a time (default: cores / 2)")
    p.add_argument("--data-root", help="data root (default: $FLAMBY_FLARE_DATA, else ~/.cache/flamby_flare)")
    p.set_defaults(func=_benchmark)

    p = sub.add_parser("report", help="compare a benchmark's results with FLamby's: markdown, CSV and a figure")
    p.add_argument("results_dir", type=Path)
    p.add_argument("--reference", type=Path, help="FLamby's results folder (default: the summary carried in the package)")
    p.set_defaults(func=_report)

    p = sub.add_parser("results", help="print the per-site table of finished runs")
    p.add_argument("path", type=Path, help="a simulator workspace, a run directory or a summary.json")
    p.set_defaults(func=_results)

    p = sub.add_parser("jobs", help="(re)generate the NVFlare job folders, or variants of them")
    p.add_argument("--out", type=Path, default=Path("jobs"), help="jobs folder (default: ./jobs)")
    p.add_argument("--dataset", nargs="+", help="only these datasets (default: all)")
    p.add_argument("--strategy", nargs="+", choices=STRATEGIES, help="only these strategies (default: all)")
    p.add_argument("--seed", type=int, help="fix the run seed in the job (default: FLAMBY_FLARE_SEED, else 42)")
    p.add_argument("--rounds", type=int, help="number of rounds (default: FLamby's get_nb_max_rounds(100))")
    p.add_argument("--data-root", help="the sites' data root (default: FLAMBY_FLARE_DATA, else the user cache)")
    p.set_defaults(func=_jobs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except FlambyFlareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

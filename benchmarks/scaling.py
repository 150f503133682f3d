"""How a run's cost grows with the number of sites: Fed-Synthetic (FLamby's generator defaults but the number of
centers, logistic regression), FedAvg, a fixed number of rounds and local updates, with 2..50 sites, in

  simulator   `nvflare simulator -n N -t T` (T: one live process per site, the fastest; or --threads)
  poc         NVFlare's POC: a real server and N site clients, the job submitted through the admin API
  inprocess   FLamby's in-process API (``flamby_flare.strategies.FedAvg``) in one process

For each: wall time (process start to exit; POC: submit to downloaded), time per round (the controller's
rounds 2.., summary.json), the sites' compute per round, the per-site overhead ((round - compute) / N, compute
being the sites' summed local seconds over the machine's cores, at least the slowest site's), peak memory of
the whole run (sum of the processes' PSS, and the drop in MemAvailable) and per site process (RSS), and the
bytes per round (each site receives the global model and sends its update, each an NVFlare-serialized
message: ``round_bytes``). A size whose processes cannot fit (``flamby_flare.capacity``) is refused
before it starts and recorded so. Writes benchmarks/results/scaling.json, a table (stdout) and a figure.

Usage: python benchmarks/scaling.py [--sites 2 5 10 20 50] [--modes simulator poc inprocess] [--rounds 3]
                                    [--updates 10] [--threads T] [--figure docs/figures/scaling.png]
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from memory_sampler import MemorySampler, poc_role, simulator_role  # noqa: E402

from flamby_flare.capacity import CapacityError, check_capacity  # noqa: E402

SEED = 7


def generate(root: Path, sites: int) -> Path:
    from flamby_flare.datasets.fed_synthetic.generator import generate as write

    data_root = root / f"data_{sites}"
    write(data_root / "fed_synthetic", log=lambda _: None, n_centers=sites)
    return data_root


def round_bytes() -> dict:
    """One site's messages of a round as NVFlare serializes them (fobs): the global model down, the update up."""
    import numpy as np
    from nvflare.app_common.abstract.fl_model import FLModel, ParamsType
    from nvflare.app_common.decomposers import common_decomposers
    from nvflare.app_common.utils.fl_model_utils import FLModelUtils
    from nvflare.fuel.utils import fobs

    from flamby_flare.datasets.fed_synthetic import Baseline
    from flamby_flare.model_state import to_numpy_state

    common_decomposers.register()  # numpy arrays, as the simulator and POC processes register them
    params = to_numpy_state(Baseline())
    down = FLModel(params_type=ParamsType.FULL, params=params, current_round=1, total_rounds=3)
    up = FLModel(
        params_type=ParamsType.FULL,
        params=params,
        metrics={"train_loss": 1.0, "train_seconds": 0.1},
        meta={"n_samples": 100},
    )
    return {
        "model_bytes": int(sum(np.asarray(v).nbytes for v in params.values())),
        "down_bytes": len(fobs.dumps(FLModelUtils.to_shareable(down))),
        "up_bytes": len(fobs.dumps(FLModelUtils.to_shareable(up))),
    }


def round_bytes_in_child() -> dict:
    """``round_bytes`` in a child process: once this process has fobs-serialized a Shareable, NVFlare 2.9's
    admin login from it fails ("'None' is not an instance of 'bytes'"; the server logs "unauthenticated msg
    ... missing client name"), so the POC runs below could never be submitted."""
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import json, scaling; print(json.dumps(scaling.round_bytes()))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SystemExit(f"scaling.py: measuring the bytes per round failed (exit {proc.returncode}): {last}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _rounds(summary: dict, sites: int) -> dict:
    """Time per round and its parts, from the controller's record (rounds 2..: round 1 loads the data)."""
    later = summary["history"][1:] or summary["history"]
    cores = os.cpu_count() or 1
    rnd = sum(r["wall_s"] for r in later) / len(later)
    compute = sum(
        max(max(r["site_compute_s"].values()), sum(r["site_compute_s"].values()) / cores) for r in later
    ) / len(later)
    return {
        "round_s": rnd,
        "round1_s": summary["history"][0]["wall_s"],
        "compute_s": compute,
        "per_site_overhead_ms": 1000 * (rnd - compute) / sites,
        "controller_s": summary["wall_time_s"],
        "mean_metric": summary["mean"],
    }


def run_simulator(tmp: Path, sites: int, rounds: int, updates: int, threads: int | None) -> dict:
    from flamby_flare.jobs import write_job
    from flamby_flare.simulator import command, prepare_workspace
    from tests.simulator import run_dir

    threads = threads or sites
    from executors.simulator_forkserver import enabled as forked

    check_capacity(threads, f"simulator with {sites} sites", fewer="--threads", forked=forked())
    data_root = generate(tmp, sites)
    os.environ["FLAMBY_FLARE_DATA"] = str(data_root)  # the job's sites: the centers generated there (-n)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FLAMBY_FLARE_STATE": str(tmp / f"state_sim_{sites}")}
    job = write_job(
        "fed_synthetic",
        "fedavg",
        tmp / f"jobs_{sites}",
        num_rounds=rounds,
        num_updates=updates,
        seed=SEED,
        tracking="none",
    )
    ws = prepare_workspace(tmp / f"sim_{sites}")
    cmd = command(job, ws, threads)
    assert cmd[cmd.index("-n") + 1] == str(sites), cmd
    with MemorySampler(lambda c: str(ws) in c, lambda c, pid: simulator_role(c, pid, str(ws))) as memory:
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
        wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(
            f"simulator with {sites} sites failed (rc {proc.returncode}): {proc.stderr.strip()[-500:]}; "
            f"see {ws}/server/log.txt"
        )
    summary = json.loads((run_dir(ws) / "summary.json").read_text())
    sites_rss = [v for k, v in memory.per_process.items() if k.startswith("site-")]
    sites_pss = [v for k, v in memory.per_process_pss.items() if k.startswith("site-")]
    return {
        "threads": threads,
        "wall_s": wall,
        **_rounds(summary, sites),
        "peak_pss_mib": memory.peak_pss_mib,
        "peak_rss_sum_mib": memory.peak_rss_mib,
        "available_drop_mib": memory.available_drop_mib,
        "site_rss_mib": max(sites_rss) if sites_rss else None,
        "site_pss_mib": max(sites_pss) if sites_pss else None,
        "processes": memory.peak_processes,
    }


def run_poc(tmp: Path, sites: int, rounds: int, updates: int) -> dict:
    from flamby_flare.jobs import write_job
    from flamby_flare.paths import SITE_CONFIG
    from flamby_flare.poc import Poc

    check_capacity(sites, f"POC with {sites} sites", poc=True, fewer="--sites")
    data_root = generate(tmp, sites)
    os.environ["FLAMBY_FLARE_DATA"] = str(data_root)  # the server reads the number of generated centers
    os.environ["HOME"] = str(tmp / "home")  # nvflare poc writes ~/.nvflare
    job = write_job(
        "fed_synthetic",
        "fedavg",
        tmp / f"poc_jobs_{sites}",
        num_rounds=rounds,
        num_updates=updates,
        seed=SEED,
        tracking="none",
    )
    poc = Poc(tmp / f"poc_{sites}")
    poc.prepare(sites)
    for site in poc.sites():  # generated data, no hospital's: every site reads the same generated root
        config = {"data_root": str(data_root), "state_dir": str(tmp / f"state_poc_{sites}" / site)}
        (poc.kits / site / "local" / SITE_CONFIG).write_text(json.dumps(config) + "\n")
    try:
        start = time.perf_counter()
        poc.start(timeout=600)
        up = time.perf_counter() - start
        with MemorySampler(lambda c: str(poc.workspace) in c, lambda c, _: poc_role(c, str(poc.kits))) as memory:
            outcome = poc.run_job(job, timeout=3600, out=tmp / f"poc_results_{sites}")
    finally:
        poc.stop()
    if not outcome.ok:
        raise RuntimeError(f"POC with {sites} sites: {outcome.reason}")
    summary = json.loads((outcome.result_dir / "workspace" / "summary.json").read_text())
    jobs = [k for k in memory.per_process if k.endswith("/job")]  # a site's job process: the one that trains
    return {
        "up_s": up,
        "wall_s": outcome.seconds,
        **_rounds(summary, sites),
        "peak_pss_mib": memory.peak_pss_mib,
        "peak_rss_sum_mib": memory.peak_rss_mib,
        "available_drop_mib": memory.available_drop_mib,
        "site_rss_mib": max((memory.per_process[k] for k in jobs), default=None),
        "site_pss_mib": max((memory.per_process_pss[k] for k in jobs), default=None),
        "site_client_rss_mib": max((v for k, v in memory.per_process.items() if k.endswith("/client")), default=None),
        "processes": memory.peak_processes,
    }


CHILD = """
import json, resource, sys, time
import torch
from torch.utils.data import DataLoader
torch.set_num_threads(1)
from flamby_flare.datasets.fed_synthetic import BATCH_SIZE, LR, Baseline, BaselineLoss, FedSynthetic
from flamby_flare.strategies import FedAvg
folder, sites, rounds, updates, seed = sys.argv[1], *map(int, sys.argv[2:6])
torch.manual_seed(seed)
loaders = [DataLoader(FedSynthetic(center=k, train=True, data_path=folder), batch_size=BATCH_SIZE, shuffle=True)
           for k in range(sites)]
strategy = FedAvg(loaders, Baseline(), BaselineLoss(), torch.optim.SGD, LR, updates, rounds, seed=seed)
start = time.perf_counter()
strategy.run()
train = time.perf_counter() - start
print(json.dumps({"train_s": train, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_inprocess(tmp: Path, sites: int, rounds: int, updates: int) -> dict:
    data_root = generate(tmp, sites)
    start = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            str(data_root / "fed_synthetic"),
            str(sites),
            str(rounds),
            str(updates),
            str(SEED),
        ],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=3600,
        cwd=REPO,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"in-process with {sites} sites failed: {proc.stderr.strip().splitlines()[-1:]}")
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    # one process: its peak RSS (getrusage) stands for the PSS sum, which it bounds from above
    return {
        "wall_s": wall,
        "round_s": child["train_s"] / rounds,
        "peak_pss_mib": child["peak_rss_mib"],
        "peak_rss_sum_mib": child["peak_rss_mib"],
        "site_rss_mib": None,
        "processes": 1,
        "memory_is_rss": True,
    }


def table(results: dict, sizes: dict) -> str:
    lines = [
        "| runner | sites | wall s | round s | compute s | overhead ms/site | peak memory MiB (PSS sum / MemAvailable drop) "
        "| site process RSS / PSS MiB | bytes per round |",
        "|---" * 9 + "|",
    ]
    per_site = sizes["down_bytes"] + sizes["up_bytes"]
    for mode, rows in results.items():
        for sites, r in rows.items():
            wire = f"{int(sites) * per_site:,}" if mode != "inprocess" else "0 (one process)"
            if "refused" in r or "failed" in r:
                lines.append(
                    f"| {mode} | {sites} | {'refused' if 'refused' in r else 'failed'}: {r.get('refused') or r['failed']} |||||| {wire} |"
                )
                continue
            overhead = f"{r['per_site_overhead_ms']:.1f}" if "per_site_overhead_ms" in r else "-"
            compute = f"{r['compute_s']:.3f}" if "compute_s" in r else "-"
            drop = f" / {r['available_drop_mib']:.0f}" if r.get("available_drop_mib") else ""
            site = f"{r['site_rss_mib']:.0f}" if r.get("site_rss_mib") else "-"
            site += f" / {r['site_pss_mib']:.0f}" if r.get("site_pss_mib") else ""
            rss = " (the one process's peak RSS)" if r.get("memory_is_rss") or mode == "inprocess" else ""
            lines.append(
                f"| {mode} | {sites} | {r['wall_s']:.1f} | {r['round_s']:.3f} | {compute} | {overhead} | "
                f"{r['peak_pss_mib']:.0f}{drop}{rss} | {site} | {wire} |"
            )
    return "\n".join(lines)


def figure(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    for mode, rows in results.items():
        done = {int(n): r for n, r in rows.items() if "refused" not in r and "failed" not in r}
        if not done:
            continue
        n = sorted(done)
        ax_t.plot(n, [done[k]["round_s"] for k in n], "o-", label=f"{mode}: time per round")
        ax_m.plot(n, [done[k]["peak_pss_mib"] / 1024 for k in n], "o-", label=mode)
        for k, r in rows.items():
            if "failed" in r or "refused" in r:
                ax_m.axvline(int(k), color="grey", lw=0.8, ls=":")
                ax_m.annotate(
                    f"{mode} {k}: {'failed' if 'failed' in r else 'refused'}",
                    (int(k), 1),
                    fontsize=7,
                    rotation=90,
                    va="bottom",
                    ha="right",
                )
    sites = sorted({int(n) for rows in results.values() for n in rows})
    if sites:
        ref = results.get("simulator", {})
        base = next((ref[str(k)]["round_s"] for k in sites if "round_s" in ref.get(str(k), {})), None)
        if base:
            ax_t.plot(sites, [base * k / sites[0] for k in sites], ":", color="grey", label="linear in sites")
    ax_m.axhline(12, color="red", ls="--", lw=1, label="goal: 12 GB")
    for ax, title, unit in ((ax_t, "Time per round", "seconds"), (ax_m, "Peak memory of the whole run (PSS)", "GiB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(sites, [str(s) for s in sites])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("sites")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Fed-Synthetic FedAvg (logistic regression) on a 2-core machine: cost against the number of sites")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, nargs="+", default=[2, 5, 10, 20, 50])
    parser.add_argument(
        "--modes", nargs="+", choices=("simulator", "poc", "inprocess"), default=["inprocess", "simulator", "poc"]
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--updates", type=int, default=10)
    parser.add_argument("--threads", type=int, help="simulator -t (default: one process per site)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "scaling.json")
    parser.add_argument("--report", action="store_true", help="only redraw the table and figure from --out")
    parser.add_argument("--figure", type=Path, default=REPO / "docs" / "figures" / "scaling.png")
    args = parser.parse_args()
    for name in ("rounds", "updates"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    if min(args.sites) < 1 or (args.threads is not None and args.threads < 1):
        parser.error("--sites and --threads must be >= 1")
    results = json.loads(args.out.read_text()).get("results", {}) if args.out.is_file() else {}
    sizes = round_bytes_in_child()
    tmp = Path(tempfile.mkdtemp(prefix="flamby_scaling_"))
    for mode in [] if args.report else args.modes:
        for sites in args.sites:
            print(f"[scaling] {mode} with {sites} sites ...", flush=True)
            try:
                if mode == "simulator":
                    row = run_simulator(tmp, sites, args.rounds, args.updates, args.threads)
                elif mode == "poc":
                    row = run_poc(tmp, sites, args.rounds, args.updates)
                else:
                    row = run_inprocess(tmp, sites, args.rounds, args.updates)
            except CapacityError as exc:
                row = {"refused": str(exc)}
            print(
                f"[scaling] {mode} {sites}: {json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()})}",
                flush=True,
            )
            results.setdefault(mode, {})[str(sites)] = row
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(
                json.dumps(
                    {
                        "rounds": args.rounds,
                        "updates": args.updates,
                        "bytes": sizes,
                        "cores": os.cpu_count(),
                        "results": results,
                    },
                    indent=2,
                )
                + "\n"
            )
    print(table(results, sizes))
    figure(results, args.figure)
    print(f"written: {args.out}, {args.figure}")


if __name__ == "__main__":
    main()

"""Start-up costs users meet first: the CLI, and NVFlare's simulator without ``-t``.

- ``flamby-flare --help`` and ``flamby-flare jobs ...`` (whole process, median of ``--repeats``), and which of
  torch, opacus, monai, efficientnet_pytorch, nvflare each imports;
- the main job, ``nvflare simulator jobs/fed_heart_disease_fedavg`` with ``-t 4`` and without ``-t`` (NVFlare's
  default: a new site process for every task), alternated; the ratio, the results' equality, and how many
  times the run says how to make it faster.
Usage: python benchmarks/startup.py [--repeats 5] [--sim-repeats 1] [--out benchmarks/results/startup.json]
(data: FLAMBY_FLARE_DATA holding fed_heart_disease, or --mirror to fetch it)
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
HEAVY = ("torch", "opacus", "monai", "efficientnet_pytorch", "nvflare", "sklearn", "pandas")
ADVICE = "run it with -t 4"


def imported(argv: list[str], env: dict) -> list[str]:
    """The heavy packages ``flamby-flare argv`` imports (run in a child, its exit caught)."""
    code = (
        "import sys; from flamby_flare import cli\n"
        f"sys.argv = ['flamby-flare', *{argv!r}]\n"
        "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
        f"import json; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="CLI runs of each command")
    parser.add_argument("--sim-repeats", type=int, default=1, help="simulator runs of each (-t 4, no -t)")
    parser.add_argument("--mirror", type=Path, help="fetch fed_heart_disease from this mirror first")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "startup.json")
    args = parser.parse_args()
    for name in ("repeats", "sim_repeats"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be at least 0, got {getattr(args, name)}")
    work = Path(tempfile.mkdtemp(prefix="startup_"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FLAMBY_FLARE_STATE": str(work / "state")}
    bin_dir = Path(sys.executable).parent
    cli, nvflare = str(bin_dir / "flamby-flare"), str(bin_dir / "nvflare")
    if args.mirror:
        env["FLAMBY_FLARE_DATA"] = str(work / "data")
        subprocess.run(
            [cli, "download", "fed_heart_disease", "--mirror", str(args.mirror)],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    commands = {
        "flamby-flare --help": ["--help"],
        "flamby-flare jobs": ["jobs", "--out", str(work / "jobs"), "--dataset", "fed_heart_disease"],
    }
    result: dict = {"cli": {}, "simulator": {}}
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeats):
        for name, argv in commands.items():
            times[name].append(round(timed([cli, *argv], env)[0], 3))
    for name, argv in commands.items():
        result["cli"][name] = {
            "times_s": times[name],
            "median_s": statistics.median(times[name]) if times[name] else None,
            "imports": imported(argv, env),
        }
        print(
            f"{name}: median {result['cli'][name]['median_s']} s, imports {result['cli'][name]['imports']}", flush=True
        )

    job = str(REPO / "jobs" / "fed_heart_disease_fedavg")
    runs = {"-t 4": ["-t", "4"], "no -t": []}
    sim_times: dict[str, list[float]] = {name: [] for name in runs}
    summaries, advice = {}, {}
    for i in range(args.sim_repeats):
        for name, extra in runs.items():
            ws = work / f"ws_{name.replace(' ', '').replace('-', '')}_{i}"
            prepare_workspace(ws)
            sim_times[name].append(round(timed([nvflare, "simulator", job, "-w", str(ws), *extra], env)[0], 2))
            summaries[name] = json.loads((ws / "server" / "simulate_job" / "summary.json").read_text())
            advice[name] = (ws / "server" / "log.txt").read_text(errors="replace").count(ADVICE)
            print(f"[{i + 1}/{args.sim_repeats}] simulator {name}: {sim_times[name][-1]:.1f} s", flush=True)
    if args.sim_repeats:
        medians = {name: statistics.median(t) for name, t in sim_times.items()}
        result["simulator"] = {
            "times_s": sim_times,
            "median_s": medians,
            "ratio_no_t_to_t4": round(medians["no -t"] / medians["-t 4"], 2),
            "same_result": summaries["-t 4"]["per_site"] == summaries["no -t"]["per_site"],
            "advice_lines": advice,
        }
        print(json.dumps(result["simulator"], indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

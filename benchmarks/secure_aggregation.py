"""Secure aggregation's cost: FedAvg without and with homomorphic encryption (``--homomorphic-encryption``,
CKKS through NVFlare's HE filters), alternated, on Fed-Heart-Disease and Fed-TCGA-BRCA (FLamby's rounds,
seed 42) and on synthetic Fed-IXI (the real NIfTI layout, ``tests/synthetic_images.py``; its 3D U-Net is the
model whose size matters), each a real ``flamby-flare simulator`` run. Reported: medians of the process's
wall time and of the controller's (rounds and validation), bytes per site and round as the server's
``MessageSize`` filters measured them, the mean metric, and the largest difference of a per-site metric and
of a final-model entry between the plain and the encrypted run (the encrypted model decrypted with the
workspace's site key).

    python benchmarks/secure_aggregation.py --data-root DIR [--repeats 3] [--out benchmarks/results/secure_aggregation.json]
    python benchmarks/secure_aggregation.py --figure-only   # the table and figure again, from --out

The figure (``--figure``, default docs/figures/secure_aggregation.png): bytes per site and round and the
controller's time, plain against HE, per dataset.

DIR must hold the downloaded heart and TCGA data (``flamby-flare download NAME --mirror ...``); the synthetic
IXI data is built under ``--work``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def run(dataset: str, he: bool, data_root: Path, work: Path, repeat: int, **variant) -> dict:
    import numpy as np
    import torch

    from flamby_flare.homomorphic import CLIENT_CONTEXT, decrypt_model
    from flamby_flare.jobs import write_job

    tag = f"{dataset}_{'he' if he else 'plain'}"
    job = write_job(dataset, "fedavg", work / "jobs" / tag, seed=42, homomorphic_encryption=he, **variant)
    ws = work / "ws" / f"{tag}_{repeat}"
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "flamby_flare", "simulator", str(job), "-w", str(ws)],
        env={**os.environ, "FLAMBY_FLARE_DATA": str(data_root), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
    )
    wall = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"{tag} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    out = ws / "server" / "simulate_job"
    summary = json.loads((out / "summary.json").read_text())
    traffic = summary["communication"].values()
    rounds = sum(t["rounds"] for t in traffic)
    if he:
        model = decrypt_model(out / "FL_global_model.pt", ws / "startup" / CLIENT_CONTEXT)
    else:
        model = {k: v.numpy() for k, v in torch.load(out / "FL_global_model.pt", weights_only=True)["model"].items()}
    return {
        "dataset": dataset,
        "he": he,
        "per_site": summary["per_site"],
        "mean": summary["mean"],
        "metric": summary["metric_name"],
        "rounds": summary["rounds"],
        "wall_s": round(wall, 2),
        "controller_s": summary["wall_time_s"],
        "down_bytes_per_site_round": sum(t["received_bytes"] for t in traffic) / rounds,
        "up_bytes_per_site_round": sum(t["sent_bytes"] for t in traffic) / rounds,
        "model": {k: np.asarray(v, np.float64) for k, v in model.items()},
    }


def compare(plain: dict, he: dict) -> dict:
    import numpy as np

    return {
        "metric_max_abs_diff": max(abs(plain["per_site"][s] - he["per_site"][s]) for s in plain["per_site"]),
        "model_max_abs_diff": max(float(np.abs(plain["model"][k] - he["model"][k]).max()) for k in plain["model"]),
    }


def figure(rows: list[dict], path: Path) -> None:
    """Two panels: KB per site and round (down + up) and the controller's seconds, plain against HE."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [
        r["dataset"].replace("fed_", "").replace("_", " ") + ("\n(synthetic)" if r["dataset"] == "fed_ixi" else "")
        for r in rows
    ]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    width = 0.38
    for ax, key, label in (
        (axes[0], "bytes", "KB per site and round (down + up)"),
        (axes[1], "controller_s", "controller time, s (rounds + validation, median)"),
    ):
        for offset, (kind, color) in zip((-width / 2, width / 2), (("plain", "#4c72b0"), ("he", "#dd8452"))):
            if key == "bytes":
                values = [
                    (r[f"down_bytes_per_site_round_{kind}"] + r[f"up_bytes_per_site_round_{kind}"]) / 1000 for r in rows
                ]
            else:
                values = [r[f"controller_s_{kind}"] for r in rows]
            bars = ax.bar(
                [i + offset for i in range(len(rows))],
                values,
                width,
                color=color,
                label="plain" if kind == "plain" else "homomorphic encryption (CKKS)",
            )
            for bar, value in zip(bars, values):
                ax.annotate(
                    f"{value:,.1f}" if value < 100 else f"{value:,.0f}",
                    (bar.get_x() + bar.get_width() / 2, value),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
        ax.set_xticks(range(len(rows)), names)
        ax.set_title(label, fontsize=9)
        if key == "bytes":
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(
                matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}")
            )
    axes[0].legend(fontsize=8, loc="upper left")
    fig.suptitle("FedAvg with and without secure aggregation (nvflare simulator, 2 cores)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(rows: list[dict]) -> None:
    """The markdown table of docs/results.md."""
    print(
        "| dataset | rounds | mean metric plain / HE | largest diff: per-site metric, model entry | KB down per site "
        "and round, plain / HE | KB up, plain / HE | controller s, plain / HE (median) | process s, plain / HE |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['dataset']} | {r['rounds']} | {r['mean_plain']:.4f} / {r['mean_he']:.4f} ({r['metric']}) | "
            f"{r['metric_max_abs_diff']:.1e}, {r['model_max_abs_diff']:.1e} | "
            f"{r['down_bytes_per_site_round_plain'] / 1000:.1f} / {r['down_bytes_per_site_round_he'] / 1000:,.1f} | "
            f"{r['up_bytes_per_site_round_plain'] / 1000:.1f} / {r['up_bytes_per_site_round_he'] / 1000:,.1f} | "
            f"{r['controller_s_plain']:.2f} / {r['controller_s_he']:.2f} | {r['wall_s_plain']:.1f} / {r['wall_s_he']:.1f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, help="holds the downloaded heart and TCGA data")
    parser.add_argument("--mirror", type=Path, default=REPO.parent / "shared" / "mirror", help="the team mirror")
    parser.add_argument(
        "--work", type=Path, default=Path("/tmp/flamby_flare_secure_aggregation"), help="scratch folder"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs of each, alternated (default 3)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "secure_aggregation.json")
    parser.add_argument("--figure", type=Path, default=REPO / "docs" / "figures" / "secure_aggregation.png")
    parser.add_argument("--figure-only", action="store_true", help="print the table and draw the figure from --out")
    args = parser.parse_args()
    if args.figure_only:
        rows = json.loads(args.out.read_text())
        table(rows)
        figure(rows, args.figure)
        return
    if args.data_root is None:
        parser.error("--data-root is required (unless --figure-only)")
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    sys.path.insert(0, str(REPO / "benchmarks"))  # its sibling (a package named benchmarks may be installed)
    from quantization import synthetic_ixi  # the same synthetic Fed-IXI data root

    cases = [
        ("fed_heart_disease", args.data_root, {}),
        ("fed_tcga_brca", args.data_root, {}),
        ("fed_ixi", synthetic_ixi(args.mirror, args.work), {"num_rounds": 3, "num_updates": 10}),
    ]
    rows = []
    for dataset, root, variant in cases:
        runs = {False: [], True: []}
        for repeat in range(args.repeats):
            for he in (False, True):  # alternated: a busy moment of the machine hits both
                runs[he].append(run(dataset, he, root, args.work, repeat, **variant))
        plain, he = runs[False][0], runs[True][0]
        row = {
            "dataset": dataset,
            "metric": plain["metric"],
            "rounds": plain["rounds"],
            "repeats": args.repeats,
            "mean_plain": plain["mean"],
            "mean_he": he["mean"],
            **compare(plain, he),
        }
        for key in ("wall_s", "controller_s"):
            row[f"{key}_plain"] = statistics.median(r[key] for r in runs[False])
            row[f"{key}_he"] = statistics.median(r[key] for r in runs[True])
            row[f"{key}_all_plain"] = [r[key] for r in runs[False]]
            row[f"{key}_all_he"] = [r[key] for r in runs[True]]
        for key in ("down_bytes_per_site_round", "up_bytes_per_site_round"):
            row[f"{key}_plain"], row[f"{key}_he"] = plain[key], he[key]
        rows.append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    table(rows)
    figure(rows, args.figure)


if __name__ == "__main__":
    main()

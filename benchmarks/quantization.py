"""Message quantization: accuracy and bytes on the wire, FedAvg without and with float16 quantization, on
Fed-Heart-Disease and Fed-TCGA-BRCA (FLamby's rounds, seed 42) and on synthetic Fed-IXI (the real NIfTI
layout, ``tests/synthetic_images.py``; its 3D U-Net is the model whose size matters), each a real
``nvflare simulator`` run. Bytes are what the server's ``MessageSize`` filters measured (per site and
round, down and up); blockwise8 needs a CUDA GPU and is run only where one is present.

    python benchmarks/quantization.py --data-root DIR [--mirror ../shared/mirror] [--out benchmarks/results/quantization.json]

DIR must hold the downloaded heart and TCGA data (``flamby-flare download NAME --mirror ...``); the synthetic
IXI data is built under ``--work``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def run(dataset: str, quantization: str | None, data_root: Path, work: Path, **variant) -> dict:
    from flamby_flare.jobs import write_job

    tag = f"{dataset}_{quantization or 'none'}"
    job = write_job(
        dataset,
        "fedavg",
        work / "jobs" / tag,
        seed=42,
        **variant,
        **({"quantization": quantization} if quantization else {}),
    )
    ws = work / "ws" / tag
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "flamby_flare", "simulator", str(job), "-w", str(ws)],
        env={**os.environ, "FLAMBY_FLARE_DATA": str(data_root), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{tag} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    summary = json.loads((ws / "server" / "simulate_job" / "summary.json").read_text())
    traffic = summary["communication"].values()
    rounds = sum(t["rounds"] for t in traffic)
    return {
        "dataset": dataset,
        "quantization": quantization or "none",
        "mean": summary["mean"],
        "metric": summary["metric_name"],
        "rounds": summary["rounds"],
        "down_bytes_per_site_round": sum(t["received_bytes"] for t in traffic) / rounds,
        "up_bytes_per_site_round": sum(t["sent_bytes"] for t in traffic) / rounds,
        "wall_s": round(time.monotonic() - start, 1),
    }


def synthetic_ixi(mirror: Path, work: Path) -> Path:
    """A data root holding Fed-IXI preprocessed from synthetic raw files (3 train + ... per center)."""
    from flamby_flare.cli import main
    from tests.synthetic_images import write_ixi_mirror

    root = work / "ixi_data"
    if not (root / "fed_ixi").is_dir():
        write_ixi_mirror(work / "ixi_mirror", mirror)
        assert main(["preprocess", "fed_ixi", "--mirror", str(work / "ixi_mirror"), "--data-root", str(root)]) == 0
    return root


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, required=True, help="holds the downloaded heart and TCGA data")
    parser.add_argument("--mirror", type=Path, default=REPO.parent / "shared" / "mirror", help="the team mirror")
    parser.add_argument("--work", type=Path, default=Path("/tmp/flamby_flare_quantization"), help="scratch folder")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "quantization.json")
    args = parser.parse_args()
    kinds = [None, "float16"] + (["blockwise8"] if torch.cuda.is_available() else [])
    cases = [
        ("fed_heart_disease", args.data_root, {}),
        ("fed_tcga_brca", args.data_root, {}),
        ("fed_ixi", synthetic_ixi(args.mirror, args.work), {"num_rounds": 3, "num_updates": 10}),
    ]
    rows = [run(d, q, root, args.work, **variant) for d, root, variant in cases for q in kinds]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print("| dataset | quantization | rounds | mean metric | KB down per site and round | KB up | wall s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['dataset']} | {r['quantization']} | {r['rounds']} | {r['mean']:.4f} ({r['metric']}) | "
            f"{r['down_bytes_per_site_round'] / 1000:.1f} | {r['up_bytes_per_site_round'] / 1000:.1f} | {r['wall_s']} |"
        )


if __name__ == "__main__":
    main()

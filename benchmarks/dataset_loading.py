"""Dataset construction and full-iteration times, against a plain pandas load of the same raw files.

Usage: python benchmarks/dataset_loading.py DATA_ROOT   (a data root holding the downloaded datasets)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import DataLoader

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from flamby_flare.datasets import fed_heart_disease, fed_tcga_brca  # noqa: E402


def timed(fn, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main(root: Path) -> None:
    torch.set_num_threads(1)
    cases = [
        (
            "fed_heart_disease",
            fed_heart_disease,
            lambda: [
                pd.read_csv(root / "fed_heart_disease" / f.name, header=None, na_values="?")
                for f in fed_heart_disease.SOURCE.files
            ],
        ),
        (
            "fed_tcga_brca",
            fed_tcga_brca,
            lambda: (
                pd.read_csv(root / "fed_tcga_brca" / "brca.csv"),
                pd.read_csv(root / "fed_tcga_brca" / "train_test_split.csv"),
            ),
        ),
    ]
    print(
        "| dataset | plain pandas read ms | build all centers, cold ms | build all centers, cached ms | iterate all train (DataLoader, B) ms | iterate all train (get_batch) ms |"
    )
    print("|---|---|---|---|---|---|")
    for name, module, plain in cases:
        path = root / name

        def build(module=module, path=path):
            return [
                module.FedClass(c, train=t, data_path=path) for c in range(module.NUM_CLIENTS) for t in (True, False)
            ]

        def cold(module=module, build=build):
            module.dataset._load.cache_clear()
            build()

        sets = build()[::2]

        def loop_loader(module=module, sets=sets):
            for ds in sets:
                for _ in DataLoader(ds, batch_size=module.BATCH_SIZE, shuffle=True):
                    pass

        def loop_batch(module=module, sets=sets):
            for ds in sets:
                for idx in torch.randperm(len(ds)).split(module.BATCH_SIZE):
                    ds.get_batch(idx)

        print(
            f"| {name} | {timed(plain) * 1e3:.1f} | {timed(cold) * 1e3:.1f} | {timed(build) * 1e3:.1f} | "
            f"{timed(loop_loader) * 1e3:.1f} | {timed(loop_batch) * 1e3:.1f} |"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]))

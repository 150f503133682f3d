"""Fed-KITS19 and Fed-LIDC-IDRI: patches/s of the loader at FLamby's sizes, training samples/s, and the peak
host memory of a site's process.

The loader is measured on cached arrays of realistic size written straight into a scratch cache (KITS19:
104 x 276 x 276 voxels per case, a CT at 2.90 x 1.45 x 1.45 mm; LIDC: 300 x 350 x 350 at 1 mm), through the
datasets' own ``get_batch`` (KITS19: foreground-oversampled 64 x 192 x 192 patches with the MONAI
augmentation; LIDC: the 384^3 crop, then 2 training patches of 128^3, or 27 test patches). Training is one
site's forward, loss, backward and SGD step, at FLamby's patch sizes or smaller ones (``--train-patch``: a
CPU cannot train the full sizes in reasonable time). Each dataset runs in its own process, so the peak
resident memory (``ru_maxrss``) is that of one site.

Usage: python benchmarks/ct_patches.py [--batches 4] [--train-updates 2] [--device cpu] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _kits(folder: Path, n: int, train: bool, patch):
    from flamby_flare.datasets.fed_kits19.dataset import FedKits19

    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in (104, 276, 276)], indexing="ij"), axis=0)
    for k in range(n):
        seg = ((((grid - 0.1 * k) / 0.2) ** 2).sum(0) < 1).astype(np.uint8)
        seg[((grid / 0.08) ** 2).sum(0) < 1] = 2
        np.save(folder / f"case_{k:05d}_image.npy", rng.normal(size=seg.shape).astype(np.float32))
        np.save(folder / f"case_{k:05d}_seg.npy", seg)
    ds = FedKits19.__new__(FedKits19)  # the cached arrays only: the raw-file checks are not measured here
    ds.cache, ds.cases, ds.patch_size, ds.train, ds.augment = (
        folder,
        [f"case_{k:05d}" for k in range(n)],
        tuple(patch),
        train,
        train,
    )
    return ds


def _lidc(folder: Path, n: int, train: bool, crop: int, patch: int):
    import nibabel

    from flamby_flare.datasets.fed_lidc_idri.dataset import FedLidcIdri

    rng = np.random.default_rng(0)
    for k in range(n):
        (folder / f"s{k}").mkdir()
        volume = rng.integers(-1024, 400, size=(300, 350, 350), dtype=np.int16)
        mask = np.zeros(volume.shape, np.uint8)
        mask[150:160, 170:180, 100 + k : 110 + k] = 1
        nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), folder / f"s{k}" / "patient.nii")
        nibabel.save(nibabel.Nifti1Image(mask, np.eye(4)), folder / f"s{k}" / "mask_consensus.nii")
    ds = FedLidcIdri.__new__(FedLidcIdri)
    ds.cache, ds.uids, ds.crop_size, ds.patch_size, ds.train = folder, [f"s{k}" for k in range(n)], crop, patch, train
    return ds


def child(dataset: str, batches: int, updates: int, device: str, train_patch: list[int] | None) -> dict:
    from flamby_flare.datasets import get_dataset

    torch.set_num_threads(1)
    module = get_dataset(dataset)
    scratch = Path(tempfile.mkdtemp(prefix="ct_patches_"))
    row: dict = {"dataset": dataset}

    def make(train: bool, patch):
        folder = Path(tempfile.mkdtemp(dir=scratch))
        if dataset == "fed_kits19":
            return _kits(folder, 4, train, patch)
        return _lidc(folder, 3, train, 384 if patch == 128 else 2 * patch, patch)

    full = (64, 192, 192) if dataset == "fed_kits19" else 128
    small = tuple(train_patch or (32, 64, 64)) if dataset == "fed_kits19" else (train_patch or [32])[0]
    for train in (True, False):
        ds = make(train, full)
        ds.get_batch(torch.tensor([0]), seed=0)  # warm-up (imports, page cache)
        start, patches = time.perf_counter(), 0
        for b in range(batches):
            X, _ = ds.get_batch(torch.tensor([b % len(ds)] * module.BATCH_SIZE), seed=b)
            patches += len(X)
        row[f"loader_{'train' if train else 'test'}_patches_per_s"] = round(patches / (time.perf_counter() - start), 2)
    row["loader_patch"] = full
    row["peak_rss_mb_loader"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    ds = make(True, small)
    model, loss_fn = module.Baseline().to(device), module.BaselineLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    batches_ = [ds.get_batch(torch.tensor([0] * module.BATCH_SIZE), seed=s) for s in range(updates + 1)]
    times = []
    for X, y in batches_:
        start = time.perf_counter()
        loss = loss_fn(model(X.to(device)), y.to(device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    samples = sum(len(X) for X, _ in batches_[1:])
    row.update(
        {
            "train_patch": small,
            "train_samples_per_s": round(samples / sum(times[1:]), 3),
            "peak_rss_mb_training": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
    )
    shutil.rmtree(scratch, ignore_errors=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--train-updates", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--train-patch", type=int, nargs="+", help="training patch (KITS19: z y x; LIDC: one size)")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.batches, args.train_updates, args.device, args.train_patch)))
        return
    rows = []
    for dataset in ("fed_kits19", "fed_lidc_idri"):
        cmd = [
            sys.executable,
            __file__,
            "--child",
            dataset,
            "--batches",
            str(args.batches),
            "--train-updates",
            str(args.train_updates),
            "--device",
            args.device,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        rows.append(json.loads(out))
    print(
        "| dataset | loader patch | loader train patches/s | loader test patches/s | peak RSS loader MB | "
        "train patch | train samples/s | peak RSS training MB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['dataset']} | {r['loader_patch']} | {r['loader_train_patches_per_s']} | {r['loader_test_patches_per_s']} | "
            f"{r['peak_rss_mb_loader']} | {r['train_patch']} | {r['train_samples_per_s']} | {r['peak_rss_mb_training']} |"
        )
    if args.out:
        args.out.write_text(json.dumps({"device": args.device, "torch_threads": 1, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()

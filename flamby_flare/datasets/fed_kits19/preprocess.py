"""Fed-KITS19 preprocessing (reference §1.5) with MONAI instead of nnU-Net v1, done once into the cache.

Raw: KiTS19's ``case_XXXXX/{imaging,segmentation}.nii.gz`` of the 96 cases in FLamby's ``thresholded_sites.csv``.
Per case, as nnU-Net's plan-and-preprocess (stage 0):
- resampled to 2.90 x 1.45 x 1.45 mm ((z, y, x), the voxel sizes read from the NIfTI header): MONAI ``Spacing``,
  trilinear for the CT, nearest for the labels (nnU-Net uses third-order splines; a deviation);
- CT intensities clipped to the 0.5 and 99.5 percentiles of the foreground (kidney and tumor) voxels, then
  z-scored with the foreground mean and standard deviation. nnU-Net pools these statistics over the whole
  task (every 10th foreground voxel of every case); here over the *training* cases present in the folder
  (every 10th foreground voxel), so test cases never shape the normalization. A site that holds only its
  own cases gets its own statistics; the values are kept in the cache record.

Cache: ``<case>_image.npy`` (float32) and ``<case>_seg.npy`` (uint8, 0 background, 1 kidney, 2 tumor) per case,
memory-mapped when patches are sampled, and ``cases.csv`` (case, center, split, depth, height, width).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from flamby_flare.datasets.cache import report_sizes, start_cache, write_record
from flamby_flare.datasets.fed_kits19.common import CENTER_NAMES, FLAMBY_SIZES, SITES, SOURCE, SPACING
from flamby_flare.datasets.volumes import read_nifti, resample
from flamby_flare.progress import Progress

CACHE_VERSION = 1
_SUBSAMPLE = 10  # nnU-Net: every 10th foreground voxel enters the intensity statistics


def verify_volume(name: str, path: str | os.PathLike) -> None:
    """Raise ValueError unless ``path`` is a 3D NIfTI volume (labels in {0, 1, 2} for a segmentation)."""
    try:
        data, _ = read_nifti(path)
    except Exception as exc:  # noqa: BLE001 - nibabel raises many kinds for a bad file
        raise ValueError(f"not a NIfTI volume ({exc})") from None
    if data.ndim != 3:
        raise ValueError(f"expected a 3D volume, got shape {data.shape}")
    if name.endswith("segmentation.nii.gz") and not set(np.unique(data).tolist()) <= {0, 1, 2}:
        raise ValueError("segmentation labels outside {0, 1, 2}")


def intensity_stats(samples: list[np.ndarray]) -> dict[str, float]:
    """nnU-Net's CT statistics of foreground intensities: 0.5/99.5 percentiles, mean and standard deviation."""
    values = np.concatenate(samples).astype(np.float64)
    if values.size == 0:
        raise ValueError("no foreground voxel in the training cases: cannot set the CT normalization")
    return {
        "percentile_00_5": float(np.percentile(values, 0.5)),
        "percentile_99_5": float(np.percentile(values, 99.5)),
        "mean": float(values.mean()),
        "sd": float(values.std()),
    }


def normalize(image: np.ndarray, stats: dict[str, float]) -> np.ndarray:
    clipped = np.clip(image, stats["percentile_00_5"], stats["percentile_99_5"])
    return ((clipped - stats["mean"]) / max(stats["sd"], 1e-8)).astype(np.float32)


def preprocess(folder: str | os.PathLike, log: Callable[[str], None] = print) -> Path:
    """Build the cache of the cases present in ``folder`` (one process)."""
    folder = Path(folder)
    sites = pd.read_csv(folder / SITES)
    sites = sites[[(folder / case / "imaging.nii.gz").is_file() for case in sites["case_ids"]]].reset_index(drop=True)
    if sites.empty:
        raise ValueError(f"no KiTS19 case of {SITES} in {folder}: run `flamby-flare download fed_kits19`")
    cache = start_cache(folder)
    rows, samples, progress = [], [], Progress("Fed-KITS19 cases (resampling)", len(sites), log, unit="case")
    for i, r in enumerate(sites.itertuples()):
        image, zooms = read_nifti(folder / r.case_ids / "imaging.nii.gz")
        seg, _ = read_nifti(folder / r.case_ids / "segmentation.nii.gz")
        image, seg = resample(image, seg, zooms, SPACING)
        if r.train_test_split == "train":
            samples.append(image[seg > 0][::_SUBSAMPLE])
        np.save(cache / f"{r.case_ids}_image.npy", image)
        np.save(cache / f"{r.case_ids}_seg.npy", seg)
        rows.append(
            {
                "case": r.case_ids,
                "center": int(r.site_ids),
                "split": r.train_test_split,
                "depth": seg.shape[0],
                "height": seg.shape[1],
                "width": seg.shape[2],
            }
        )
        progress(i + 1)
    stats = intensity_stats(samples)
    log(
        "  CT normalization: clip to [{percentile_00_5:.1f}, {percentile_99_5:.1f}], mean {mean:.1f}, sd {sd:.1f}".format(
            **stats
        )
    )
    for row in rows:  # second pass: normalize in place
        path = cache / f"{row['case']}_image.npy"
        image = np.load(path, mmap_mode="r+")
        image[:] = normalize(np.asarray(image), stats)
        image.flush()
        del image
    table = pd.DataFrame(rows)
    table.to_csv(cache / "cases.csv", index=False)
    sizes = report_sizes(table["center"], table["split"], CENTER_NAMES, FLAMBY_SIZES, log)
    write_record(SOURCE, folder, CACHE_VERSION, cases=len(rows), sizes=sizes, intensity=stats, spacing=list(SPACING))
    log(f"  cache: {cache} ({len(rows)} cases)")
    return cache

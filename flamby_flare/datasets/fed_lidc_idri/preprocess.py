"""Fed-LIDC-IDRI preprocessing (reference §1.2), done once into the cache.

Per series of FLamby's ``metadata.csv`` (``convert``): the DICOM volume in HU and the readers' consensus nodule
mask, both resampled to 1 mm isotropic with MONAI ``Spacing`` (trilinear CT, nearest mask; full extent),
written as uncompressed NIfTI (``<uid>/patient.nii`` int16, ``<uid>/mask_consensus.nii`` uint8), which the
dataset memory-maps. A series that cannot be converted (FLamby loses 9) is skipped and named in the cache
record (``failed``). ``scans.csv``: uid, center (manufacturer), split, shape.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from flamby_flare.datasets.cache import report_sizes, start_cache, write_record
from flamby_flare.datasets.fed_lidc_idri.common import ANNOTATIONS, CENTER_NAMES, FLAMBY_SIZES, METADATA, SOURCE
from flamby_flare.datasets.fed_lidc_idri.convert import (
    annotations_by_series,
    consensus_mask,
    parse_annotations,
    read_series,
)
from flamby_flare.datasets.volumes import resample
from flamby_flare.progress import Progress, parallel_map

CACHE_VERSION = 2  # 2: FLamby's intensity correction, series with missing slices left out
SPACING = (1.0, 1.0, 1.0)


def convert_series(series_zip: Path, xml: bytes, out: Path) -> tuple[int, int, int]:
    """Write ``out/patient.nii`` and ``out/mask_consensus.nii`` for one series; returns the volume's shape."""
    import nibabel

    series = read_series(series_zip)
    _, readings = parse_annotations(xml)
    volume, mask = resample(series.volume, consensus_mask(series, readings), series.spacing, SPACING)
    volume = np.rint(volume).astype(np.int16)  # HU
    out.mkdir(parents=True, exist_ok=True)
    for name, array in (("patient.nii", volume), ("mask_consensus.nii", mask)):
        nibabel.save(nibabel.Nifti1Image(array, np.eye(4)), out / name)
    return volume.shape


def _convert(folder: str, uid: str, xml: bytes | None, cache: str) -> tuple[str, tuple | str]:
    if xml is None:
        return uid, "no LIDC XML annotation for this series"
    try:
        return uid, convert_series(Path(folder) / "series" / f"{uid}.zip", xml, Path(cache) / uid)
    except Exception as exc:  # noqa: BLE001 - a bad series is skipped and named, as FLamby's conversion loses some
        return uid, f"{type(exc).__name__}: {exc}"


def preprocess(folder: str | os.PathLike, log: Callable[[str], None] = print, workers: int | None = None) -> Path:
    """Build the cache of the series present in ``folder`` over ``workers`` processes (default: all cores)."""
    folder = Path(folder)
    meta = pd.read_csv(folder / METADATA)
    meta = meta[[(folder / "series" / f"{uid}.zip").is_file() for uid in meta["SeriesInstanceUID"]]].reset_index(
        drop=True
    )
    if meta.empty:
        raise ValueError(f"no series of {METADATA} in {folder / 'series'}: run `flamby-flare download fed_lidc_idri`")
    xmls = annotations_by_series(folder / ANNOTATIONS)
    cache = start_cache(folder)
    tasks = [(str(folder), uid, xmls.get(uid), str(cache)) for uid in meta["SeriesInstanceUID"]]
    shapes, failed = {}, {}
    for uid, result in parallel_map(
        _convert, tasks, Progress("Fed-LIDC-IDRI series", len(tasks), log, unit="series"), workers
    ):
        (failed if isinstance(result, str) else shapes)[uid] = result
    for uid, reason in failed.items():
        log(f"  skipped {uid}: {reason}")
    kept = meta[meta["SeriesInstanceUID"].isin(shapes)]
    table = pd.DataFrame(
        {
            "uid": kept["SeriesInstanceUID"],
            "center": kept["Manufacturer"],
            "split": kept["Split"],
            "shape": [" ".join(map(str, shapes[u])) for u in kept["SeriesInstanceUID"]],
        }
    )
    table.to_csv(cache / "scans.csv", index=False)
    sizes = report_sizes(table["center"], table["split"], CENTER_NAMES, FLAMBY_SIZES, log)
    write_record(SOURCE, folder, CACHE_VERSION, scans=len(table), sizes=sizes, failed=failed)
    log(f"  cache: {cache} ({len(table)} scans, {len(failed)} skipped)")
    return cache

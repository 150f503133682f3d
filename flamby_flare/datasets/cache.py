"""The preprocessed cache of an image dataset: ``<dataset folder>/preprocessed/``, written once by
``flamby-flare preprocess NAME`` and read (memory-mapped) by every training run.

The cache records the SHA-256 of the raw files it was built from and its format version; a cache built
from other files, or by an older format, counts as missing, so a stale cache is never trained on.
Writers put everything in place first and write the record last (atomically): an interrupted
preprocessing leaves no cache that looks finished.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from flamby_flare.datasets.tensor_dataset import check_center
from flamby_flare.download import DatasetSource, check_dataset_files, expected_sha256
from flamby_flare.errors import DatasetNotFoundError
from flamby_flare.paths import dataset_dir

CACHE_DIR = "preprocessed"
RECORD = ".preprocessed.json"


def cache_dir(folder: str | os.PathLike) -> Path:
    return Path(folder) / CACHE_DIR


def _expected_record(source: DatasetSource, folder: Path, version: int) -> dict:
    return {
        "dataset": source.name,
        "version": version,
        "raw": {f.name: expected_sha256(f, folder) for f in source.files_in(folder)},
    }


def require_cache(
    source: DatasetSource, folder: str | os.PathLike, version: int, centers: list[int] | None = None
) -> Path:
    """The verified cache folder of ``source`` in ``folder`` (whose raw files of ``centers`` must verify), or
    a one-line error saying what to run."""
    folder = Path(folder)
    check_dataset_files(source, folder, centers)
    cache = cache_dir(folder)
    try:
        record = json.loads((cache / RECORD).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        record = None
    expected = _expected_record(source, folder, version)
    if record is None or {k: record.get(k) for k in expected} != expected:
        state = "is missing" if record is None else "was built from other raw files or an older version"
        raise DatasetNotFoundError(
            f"{source.title}: the preprocessed cache {cache} {state}; run `flamby-flare preprocess {source.name}`"
        )
    return cache


def write_record(source: DatasetSource, folder: str | os.PathLike, version: int, **facts) -> None:
    """Mark the cache of ``folder`` complete (call last, once every cache file is in place)."""
    folder = Path(folder)
    record = {**_expected_record(source, folder, version), **facts, "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    tmp = cache_dir(folder) / (RECORD + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, cache_dir(folder) / RECORD)


def start_cache(folder: str | os.PathLike) -> Path:
    """The cache folder, emptied of its completion record (so it counts as missing until rewritten)."""
    cache = cache_dir(folder)
    cache.mkdir(parents=True, exist_ok=True)
    (cache / RECORD).unlink(missing_ok=True)
    return cache


def report_sizes(
    centers, splits, names: tuple[str, ...], flamby: dict[str, tuple[int, ...]], log: Callable[[str], None] = print
) -> dict[str, str]:
    """Log the per-center train/test sizes of a cache beside FLamby's (``flamby``: {"train": ..., "test": ...});
    returns them as ``{center: "train/test"}`` for the cache record."""
    counts = pd.crosstab(pd.Series(list(centers), name="c"), pd.Series(list(splits), name="s"))
    ours = {
        names[c]: tuple(
            int(counts.at[c, s]) if c in counts.index and s in counts.columns else 0 for s in ("train", "test")
        )
        for c in range(len(names))
    }
    theirs = {names[c]: (flamby["train"][c], flamby["test"][c]) for c in range(len(names))}
    log("  train/test per center: " + ", ".join(f"{n} {a}/{b}" for n, (a, b) in ours.items()))
    if ours == theirs:
        log("  = FLamby's sizes")
    else:
        log(
            "  differs from FLamby's ("
            + ", ".join(f"{n} {a}/{b}" for n, (a, b) in theirs.items())
            + "): raw files missing, or items that failed to convert"
        )
    return {n: f"{a}/{b}" for n, (a, b) in ours.items()}


def open_split(
    source: DatasetSource,
    data_path: str | os.PathLike | None,
    version: int,
    table: str,
    center: int,
    train: bool,
    pooled: bool,
    num_clients: int,
):
    """The verified cache folder and the rows of its index ``table`` (a CSV with ``center`` and ``split``
    columns) for center ``center`` (all centers with ``pooled``), train or test; the rows keep their
    positions in the table as index."""
    check_center(center, pooled, num_clients)
    folder = data_path if data_path is not None else dataset_dir(source.name)
    cache = require_cache(source, folder, version, None if pooled else [center])
    rows = pd.read_csv(cache / table)
    keep = rows["split"] == ("train" if train else "test")
    if not pooled:
        keep &= rows["center"] == center
    return cache, rows[keep]

"""Fed-IXI preprocessing (reference §1.3), done once into the cache so training never repeats it.

Raw: the IXI-Tiny archive (``IXI_sample/IXI<id>-<Center>-<n>/T1/*.nii.gz`` and ``.../label/*.nii.gz``; Mendeley
wraps it in an outer zip, which is read through) and FLamby's ``metadata_tiny.csv`` (``Patient ID,
Manufacturer, Split``). Per subject, as FLamby's transforms: channel first; MONAI ``Resize((48, 60, 48))``
(area); the image z-scored over the volume (``NormalizeIntensity``); the label one-hot over 2 classes
(``AsDiscrete``, which truncates the resized label, as in FLamby). Cache: ``images.npy`` (N, 1, 48, 60, 48)
float32, ``labels.npy`` (N, 2, 48, 60, 48) uint8 and ``subjects.csv`` (patient id, center, split).
FLamby re-reads and re-transforms every volume from the zip at every access; the result is the same.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from flamby_flare.datasets.cache import report_sizes, start_cache, write_record
from flamby_flare.datasets.fed_ixi.common import ARCHIVE, CENTER_NAMES, FLAMBY_SIZES, METADATA, SOURCE
from flamby_flare.datasets.volumes import read_nifti
from flamby_flare.progress import Progress

SHAPE = (48, 60, 48)
CACHE_VERSION = 1
SUBJECT = re.compile(r"IXI(\d{3})-(Guys|HH|IOP)-\d{4}")


def _open_archive(path: Path) -> zipfile.ZipFile:
    """The zip holding the NIfTI files: ``path`` itself, or the zip inside it (Mendeley's wrapping)."""
    archive = zipfile.ZipFile(path)
    names = archive.namelist()
    if not any(SUBJECT.search(n) for n in names):
        inner = [n for n in names if n.endswith(".zip")]
        if len(inner) == 1:
            return zipfile.ZipFile(io.BytesIO(archive.read(inner[0])))
    return archive


def _subject_names(names: list[str]) -> dict[int, tuple[str, dict[str, str]]]:
    """patient id -> (center, {"T1": member, "label": member})."""
    found: dict[int, tuple[str, dict[str, str]]] = {}
    for name in names:
        match = SUBJECT.search(name)
        kind = "T1" if "/T1/" in name else "label" if "/label/" in name else None
        if match and kind and name.endswith((".nii", ".nii.gz")):
            found.setdefault(int(match.group(1)), (match.group(2), {}))[1][kind] = name
    return found


def verify_archive(path: str | os.PathLike) -> None:
    """Raise ValueError unless ``path`` is an IXI-Tiny archive: subjects of the three centers, each with its
    T1 volume and its label."""
    try:
        with _open_archive(Path(path)) as archive:
            subjects = _subject_names(archive.namelist())
    except zipfile.BadZipFile as exc:
        raise ValueError(f"not a zip archive ({exc})") from None
    incomplete = [pid for pid, (_, files) in subjects.items() if set(files) != {"T1", "label"}]
    if incomplete:
        raise ValueError(f"subjects {incomplete[:5]} lack their T1 or label volume")
    centers = {center for center, _ in subjects.values()}
    if centers != set(CENTER_NAMES):
        raise ValueError(
            f"expected subjects of {', '.join(CENTER_NAMES)}, found {', '.join(sorted(centers)) or 'none'}"
        )


def _subject_files(path: Path) -> Iterator[tuple[int, str, bytes, bytes]]:
    """(patient id, center, T1 bytes, label bytes) for every subject of the archive, by patient id."""
    with _open_archive(path) as archive:
        subjects = _subject_names(archive.namelist())
        for pid in sorted(subjects):
            center, files = subjects[pid]
            yield pid, center, archive.read(files["T1"]), archive.read(files["label"])


def transform(image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FLamby's transforms of one subject: (1, 48, 60, 48) z-scored image, (2, 48, 60, 48) one-hot label."""
    from monai.transforms import AsDiscrete, NormalizeIntensity, Resize

    resize = Resize(SHAPE)
    x = NormalizeIntensity()(resize(image[None]))
    y = AsDiscrete(to_onehot=2)(resize(label[None]))
    return np.asarray(x, np.float32), np.asarray(y, np.uint8)


def preprocess(folder: str | os.PathLike, log: Callable[[str], None] = print) -> Path:
    """Build the cache of the downloaded dataset in ``folder`` (FLamby's split from its metadata file), in one
    process: 566 small volumes take about a minute."""
    folder = Path(folder)
    split = pd.read_csv(folder / METADATA).set_index("Patient ID")["Split"]
    with _open_archive(folder / ARCHIVE) as archive:
        n = len(_subject_names(archive.namelist()))
    cache = start_cache(folder)
    images = np.lib.format.open_memmap(cache / "images.npy", mode="w+", dtype=np.float32, shape=(n, 1, *SHAPE))
    labels = np.lib.format.open_memmap(cache / "labels.npy", mode="w+", dtype=np.uint8, shape=(n, 2, *SHAPE))
    rows, progress = [], Progress("Fed-IXI volumes", n, log, unit="volume")
    for i, (pid, center, t1, label) in enumerate(_subject_files(folder / ARCHIVE)):
        if pid not in split.index:
            raise ValueError(f"IXI subject {pid:03d} is not in {METADATA}: is the archive IXI-Tiny?")
        images[i], labels[i] = transform(read_nifti(t1, np.float32)[0], read_nifti(label, np.float32)[0])
        rows.append({"patient_id": pid, "center": CENTER_NAMES.index(center), "split": split[pid]})
        progress(i + 1)
    images.flush()
    labels.flush()
    del images, labels
    table = pd.DataFrame(rows)
    table.to_csv(cache / "subjects.csv", index=False)
    sizes = report_sizes(table["center"], table["split"], CENTER_NAMES, FLAMBY_SIZES, log)
    write_record(SOURCE, folder, CACHE_VERSION, subjects=len(rows), sizes=sizes)
    log(f"  cache: {cache} ({len(rows)} subjects)")
    return cache

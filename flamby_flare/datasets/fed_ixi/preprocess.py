"""Fed-IXI preprocessing (reference §1.3), done once into a cache so training never repeats it.

Raw: the IXI-Tiny archive (a zip, or its extracted folder) with ``IXI_sample/IXI<id>-<Center>-<n>/T1/*.nii.gz``
and ``.../label/*.nii.gz``, and FLamby's ``metadata_tiny.csv`` (``Patient ID, Manufacturer, Split``).
Per subject, as FLamby's transforms: channel first; MONAI ``Resize((48, 60, 48))`` (area); the image
z-scored over the volume (``NormalizeIntensity``); the label one-hot over 2 classes (``AsDiscrete``, which
truncates the resized label, as in FLamby). Cache: ``images.npy`` (N, 1, 48, 60, 48) float32,
``labels.npy`` (N, 2, 48, 60, 48) uint8 and ``subjects.csv`` (patient id, center, split), written
atomically, last the completion marker.
"""

from __future__ import annotations

import gzip
import os
import re
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

SHAPE = (48, 60, 48)
CENTERS = {"Guys": 0, "HH": 1, "IOP": 2}
SUBJECT = re.compile(r"IXI(\d{3})-(Guys|HH|IOP)-\d{4}")
CACHE_MARKER = ".preprocessed"


def _volume(data: bytes) -> np.ndarray:
    import nibabel

    raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    return np.asarray(nibabel.Nifti1Image.from_bytes(raw).dataobj, dtype=np.float32)


def _subject_files(raw: Path) -> Iterator[tuple[int, str, bytes, bytes]]:
    """(patient id, center, T1 bytes, label bytes) for every subject of the archive or folder, by patient id."""
    if raw.is_file():
        with zipfile.ZipFile(raw) as archive:
            names = archive.namelist()
            read = archive.read
            yield from _pairs(names, read)
    else:
        names = [str(p.relative_to(raw)) for p in raw.rglob("*.nii*")]
        yield from _pairs(names, lambda name: (raw / name).read_bytes())


def _pairs(names: list[str], read: Callable[[str], bytes]) -> Iterator[tuple[int, str, bytes, bytes]]:
    found: dict[int, dict[str, str]] = {}
    centers: dict[int, str] = {}
    for name in names:
        match = SUBJECT.search(name)
        kind = "T1" if "/T1/" in name else "label" if "/label/" in name else None
        if match and kind and name.endswith((".nii", ".nii.gz")):
            pid = int(match.group(1))
            found.setdefault(pid, {})[kind] = name
            centers[pid] = match.group(2)
    for pid in sorted(found):
        files = found[pid]
        if set(files) != {"T1", "label"}:
            raise ValueError(f"IXI subject {pid:03d} lacks its {'T1' if 'T1' not in files else 'label'} file in the archive")
        yield pid, centers[pid], read(files["T1"]), read(files["label"])


def transform(image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FLamby's transforms of one subject: (1, 48, 60, 48) z-scored image, (2, 48, 60, 48) one-hot label."""
    from monai.transforms import AsDiscrete, NormalizeIntensity, Resize

    resize = Resize(SHAPE)
    x = NormalizeIntensity()(resize(image[None]))
    y = AsDiscrete(to_onehot=2)(resize(label[None]))
    return np.asarray(x, np.float32), np.asarray(y, np.uint8)


def preprocess(raw: str | os.PathLike, metadata: str | os.PathLike, cache: str | os.PathLike,
               progress: Callable[[int, int], None] | None = None) -> Path:
    """Write the cache for the archive ``raw`` with FLamby's split from ``metadata``; returns the cache folder."""
    raw, cache = Path(raw), Path(cache)
    split = pd.read_csv(metadata).set_index("Patient ID")["Split"]
    subjects = list(_subject_files(raw))
    missing = [pid for pid, *_ in subjects if pid not in split.index]
    if missing:
        raise ValueError(f"IXI subjects {missing[:5]} are not in {metadata}")
    cache.mkdir(parents=True, exist_ok=True)
    (cache / CACHE_MARKER).unlink(missing_ok=True)
    images = np.lib.format.open_memmap(cache / ".images.npy", mode="w+", dtype=np.float32, shape=(len(subjects), 1, *SHAPE))
    labels = np.lib.format.open_memmap(cache / ".labels.npy", mode="w+", dtype=np.uint8, shape=(len(subjects), 2, *SHAPE))
    rows = []
    for i, (pid, center, t1, label) in enumerate(subjects):
        images[i], labels[i] = transform(_volume(t1), _volume(label))
        rows.append({"patient_id": pid, "center": CENTERS[center], "split": split[pid]})
        if progress:
            progress(i + 1, len(subjects))
    images.flush()
    labels.flush()
    del images, labels
    os.replace(cache / ".images.npy", cache / "images.npy")
    os.replace(cache / ".labels.npy", cache / "labels.npy")
    pd.DataFrame(rows).to_csv(cache / "subjects.csv", index=False)
    (cache / CACHE_MARKER).write_text(f"{len(rows)} subjects\n")
    return cache

"""Reading NIfTI volumes (plain or gzipped) from a file of any name, or from bytes (a zip member)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np


def read_nifti(source: str | os.PathLike | bytes, dtype=None) -> tuple[np.ndarray, tuple[float, ...]]:
    """The volume's array (as stored, or cast to ``dtype``) and its voxel sizes from the header."""
    import nibabel

    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    image = nibabel.Nifti1Image.from_bytes(data)
    array = np.asarray(image.dataobj) if dtype is None else np.asarray(image.dataobj, dtype=dtype)
    return array, tuple(float(z) for z in image.header.get_zooms()[: array.ndim])

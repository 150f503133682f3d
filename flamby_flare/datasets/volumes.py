"""3D volumes: reading NIfTI (plain or gzipped) from a file of any name or from bytes (a zip member), and
resampling an image with its label map to a voxel size."""

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


def resample(
    image: np.ndarray, labels: np.ndarray, zooms: tuple[float, ...], spacing: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """``image`` (trilinear, float32) and ``labels`` (nearest, uint8) from voxel sizes ``zooms`` to ``spacing``,
    with MONAI ``Spacing`` over the full extent: shape round(n x zoom / spacing), as nnU-Net; the array axes
    keep their order."""
    from monai.data import MetaTensor
    from monai.transforms import Spacing

    affine = np.diag([*zooms, 1.0])
    x = Spacing(pixdim=spacing, mode="bilinear", scale_extent=True)(
        MetaTensor(image[None].astype(np.float32), affine=affine)
    )
    y = Spacing(pixdim=spacing, mode="nearest", scale_extent=True)(
        MetaTensor(labels[None].astype(np.float32), affine=affine)
    )
    return np.asarray(x[0], np.float32), np.rint(np.asarray(y[0])).astype(np.uint8)

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


def nearest_indices(n_out: int, out_scale: float, out_offset: float, in_scale: float, in_offset: float) -> np.ndarray:
    """The source voxel nearest to each of ``n_out`` samples on one axis (world = scale x index + offset on
    both grids), computed with NumPy's elementwise float64 arithmetic (correctly rounded, so the same on every
    CPU) and clipped to the source; a torch nearest-neighbour sampler's pick at a tie (every sample when an
    axis is halved) depends on the CPU kernel's last bit."""
    source = (out_scale * np.arange(n_out, dtype=np.float64) + out_offset - in_offset) / in_scale
    return np.clip(np.rint(source), 0, None).astype(np.int64)


def resample(
    image: np.ndarray, labels: np.ndarray, zooms: tuple[float, ...], spacing: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """``image`` (trilinear, float32) and ``labels`` (nearest, uint8) from voxel sizes ``zooms`` to ``spacing``,
    with MONAI ``Spacing`` over the full extent: shape round(n x zoom / spacing), as nnU-Net; the array axes
    keep their order. The labels are picked by ``nearest_indices`` (exact, CPU-independent)."""
    from monai.data import MetaTensor
    from monai.transforms import Spacing

    affine = np.diag([*zooms, 1.0])
    x = Spacing(pixdim=spacing, mode="bilinear", scale_extent=True)(
        MetaTensor(image[None].astype(np.float32), affine=affine)
    )
    out = np.asarray(x.affine, dtype=np.float64)
    picks = [
        np.minimum(nearest_indices(n_out, out[a, a], out[a, 3], affine[a, a], affine[a, 3]), n_in - 1)
        for a, (n_in, n_out) in enumerate(zip(labels.shape, x.shape[1:]))
    ]
    return np.asarray(x[0], np.float32), np.ascontiguousarray(labels[np.ix_(*picks)], dtype=np.uint8)

"""``FedKits19``: FLamby's Fed-KITS19 dataset (6 silos, kidney and tumor CT segmentation) as patches sampled from
the preprocessed cache (``flamby-flare preprocess fed_kits19``), memory-mapped.

One item is one patch of one case, as in FLamby (nnU-Net's loader): every second item's patch is centered on a
foreground voxel (a class drawn among those present, then a voxel of it), the others anywhere in the volume;
volumes smaller than the patch are zero-padded. Training patches are augmented nnU-Net-like with MONAI: affine
(rotation up to 30 degrees, scaling 0.7-1.4, p 0.2), Gaussian noise (std 0.1, p 0.1), gamma (0.7-1.5, p 0.3)
and mirroring on each axis (p 0.5). Every draw comes from the batch seed.

Deviation: FLamby's test patches are drawn anew at every evaluation (no sliding window); here test item i is
drawn from a seed fixed per case, so evaluations are repeatable and comparable across rounds and runs.
"""

from __future__ import annotations

import math
import numbers
import os
import reprlib

import numpy as np
import torch
from torch.utils.data import Dataset

from flamby_flare.datasets.cache import open_split
from flamby_flare.datasets.fed_kits19.common import NUM_CLIENTS, PATCH_SIZE, SOURCE
from flamby_flare.datasets.fed_kits19.model import DOWNSAMPLING
from flamby_flare.datasets.fed_kits19.preprocess import CACHE_VERSION
from flamby_flare.datasets.tensor_dataset import batch_seed
from flamby_flare.seeding import derive_seed


def patch_corner(
    shape: tuple[int, ...], patch: tuple[int, ...], seg: np.ndarray | None, rng: np.random.Generator
) -> np.ndarray:
    """The patch's lowest corner (may be negative or beyond the volume: the outside is padded). With ``seg``,
    the patch is centered on one of its foreground voxels, else placed uniformly so it overlaps the volume."""
    shape, patch = np.array(shape), np.array(patch)
    if seg is not None:
        classes = [c for c in (1, 2) if (seg == c).any()]
        if classes:
            voxels = np.argwhere(seg == classes[rng.integers(len(classes))])
            center = voxels[rng.integers(len(voxels))]
            return center - patch // 2
    low, high = np.minimum(0, shape - patch), np.maximum(0, shape - patch)
    return np.array([rng.integers(lo, hi + 1) for lo, hi in zip(low, high)])


def crop(volume: np.ndarray, corner: np.ndarray, patch: tuple[int, ...]) -> np.ndarray:
    """``volume[corner : corner + patch]``, zero outside the volume."""
    out = np.zeros(patch, dtype=volume.dtype)
    src = tuple(slice(max(c, 0), min(c + p, n)) for c, p, n in zip(corner, patch, volume.shape))
    dst = tuple(slice(s.start - c, s.stop - c) for s, c in zip(src, corner))
    if all(s.stop > s.start for s in src):
        out[dst] = volume[src]
    return out


def _augmentation(seed: int):
    from monai.transforms import (
        Compose,
        RandAdjustContrastd,
        RandAffined,
        RandFlipd,
        RandGaussianNoised,
    )

    transform = Compose(
        [
            RandAffined(
                ("image", "label"),
                prob=0.2,
                rotate_range=(np.pi / 6,) * 3,
                scale_range=((-0.3, 0.4),) * 3,
                mode=("bilinear", "nearest"),
                padding_mode="zeros",
            ),
            RandGaussianNoised("image", prob=0.1, std=0.1),
            RandAdjustContrastd("image", prob=0.3, gamma=(0.7, 1.5)),
            *[RandFlipd(("image", "label"), prob=0.5, spatial_axis=axis) for axis in range(3)],
        ]
    )
    transform.set_random_state(seed=seed % 2**32)
    return transform


def checked_patch(patch_size) -> tuple[int, int, int]:
    """``patch_size`` (a job file's ``dataset_args`` may give it) as three ints, else a one-line ValueError naming
    it: positive multiples of the U-Net's ``DOWNSAMPLING`` that leave its bottom layer 2 voxels or more."""
    try:
        patch = tuple(patch_size)
    except TypeError:  # a number or None
        patch = ()
    if (
        len(patch) != 3
        or not all(isinstance(p, numbers.Integral) and not isinstance(p, bool) for p in patch)
        or any(p <= 0 or p % d for p, d in zip(patch, DOWNSAMPLING))
        or math.prod(p // d for p, d in zip(patch, DOWNSAMPLING)) < 2
    ):
        raise ValueError(
            f"patch_size must be positive multiples of {DOWNSAMPLING} leaving the U-Net's bottom layer 2 "
            f"voxels or more (instance normalization needs 2), three integers, e.g. (16, 32, 64); "
            f"got {reprlib.repr(patch_size)}"
        )
    return tuple(int(p) for p in patch)


class FedKits19(Dataset):
    """Silo ``center``'s train or test cases (FLamby's split), or all silos' with ``pooled``. Items:
    ``(X, y)``, X a (1, *patch_size) float32 CT patch, y its (1, *patch_size) int64 labels. ``patch_size``
    (default FLamby's 64 x 192 x 192) must be multiples of the U-Net's downsampling, 16 x 32 x 32, that leave
    its bottom layer at least 2 voxels (instance normalization needs 2): 16 x 32 x 64 is the smallest; ``augment``
    defaults to the train set's. ``data_path``: the dataset folder (default ``<data root>/fed_kits19``)."""

    heavy_loading = True  # per-item CPU work (patches, augmentation): on a GPU, loaded in worker processes

    def __init__(
        self,
        center: int = 0,
        train: bool = True,
        pooled: bool = False,
        debug: bool = False,
        data_path: str | os.PathLike | None = None,
        patch_size: tuple[int, int, int] = PATCH_SIZE,
        augment: bool | None = None,
    ):
        self.patch_size = checked_patch(patch_size)
        self.cache, cases = open_split(
            SOURCE, data_path, CACHE_VERSION, "cases.csv", center, train, pooled, NUM_CLIENTS
        )
        self.center, self.train, self.pooled = center, train, pooled
        self.augment = train if augment is None else augment
        self.cases = cases["case"].tolist()

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        X, y = self.get_batch(torch.tensor([i]))
        return X[0], y[0]

    def sample(self, i: int, foreground: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Case ``i``'s patch (image, labels), centered on foreground when ``foreground``, drawn from ``seed``."""
        image = np.load(self.cache / f"{self.cases[i]}_image.npy", mmap_mode="r")
        seg = np.load(self.cache / f"{self.cases[i]}_seg.npy", mmap_mode="r")
        rng = np.random.default_rng(seed)
        corner = patch_corner(seg.shape, self.patch_size, np.asarray(seg) if foreground else None, rng)
        return crop(image, corner, self.patch_size), crop(seg, corner, self.patch_size)

    def get_batch(self, indices: torch.Tensor, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Patches of ``indices``: every second one on foreground (the second of each pair); training patches
        augmented. All draws come from ``seed`` (None: torch's generator); test patches from their case."""
        seed = batch_seed(seed)
        images, labels = [], []
        for j, i in enumerate(torch.as_tensor(indices).reshape(-1).tolist()):
            if self.train:
                image, seg = self.sample(i, foreground=j % 2 == 1, seed=derive_seed(seed, j))
            else:  # fixed per case: repeatable evaluations
                image, seg = self.sample(i, foreground=i % 2 == 1, seed=derive_seed(i, 7))
            if self.augment:
                item = _augmentation(derive_seed(seed, j, 1))(
                    {"image": image[None].copy(), "label": seg[None].astype(np.float32)}
                )
                image, seg = np.asarray(item["image"])[0], np.rint(np.asarray(item["label"])[0])
            images.append(torch.as_tensor(np.asarray(image, np.float32))[None])
            labels.append(torch.as_tensor(np.asarray(seg, np.int64))[None])
        return torch.stack(images), torch.stack(labels)

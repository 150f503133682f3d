"""``FedLidcIdri``: FLamby's Fed-LIDC-IDRI dataset (4 manufacturers, lung-nodule CT segmentation) over the
preprocessed cache (``flamby-flare preprocess fed_lidc_idri``), loaded as FLamby does (reference §1.2).

One item is one scan: its 1 mm volume centered and cropped or padded to 384^3 (padding with the scan's minimum),
clipped to [-1024, 600] HU and mapped to [0, 1] (ClipNorm). Training items are 2 patches of 128^3 (FLamby's
"fast" sampler, ratio 0.8): floor(2 x 0.8) = 1 centered on a random nodule voxel shifted by up to a quarter
patch, the other at a Gaussian position around the center (sigma = half the size / 6); both clamped inside
the volume; a scan without nodule gets 2 Gaussian ones. Test items are all 27 non-overlapping 128^3 patches.
A batch of scans is the concatenation of their patches. All draws come from the batch seed.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset

from flamby_flare.datasets.cache import open_split
from flamby_flare.datasets.fed_lidc_idri.common import CLIP, CROP_SIZE, NUM_CLIENTS, PATCH_SIZE, SOURCE
from flamby_flare.datasets.fed_lidc_idri.preprocess import CACHE_VERSION
from flamby_flare.datasets.tensor_dataset import batch_seed
from flamby_flare.seeding import derive_seed

N_PATCHES, RATIO = 2, 0.8


def crop_or_pad(volume: np.ndarray, size: int) -> np.ndarray:
    """``volume`` centered in a ``size``^3 array: cropped where larger, padded with its minimum where smaller
    (FLamby's ``resize_by_crop_or_pad``: the padding's first half rounded down)."""
    out = np.full((size,) * 3, volume.min(), dtype=volume.dtype)
    src, dst = [], []
    for n in volume.shape:
        if n >= size:
            start = (n - size) // 2
            src.append(slice(start, start + size))
            dst.append(slice(0, size))
        else:
            start = (size - n) // 2
            src.append(slice(0, n))
            dst.append(slice(start, start + n))
    out[tuple(dst)] = volume[tuple(src)]
    return out


def clip_norm(volume: np.ndarray) -> np.ndarray:
    low, high = CLIP
    return ((np.clip(volume.astype(np.float32), low, high) - low) / (high - low)).astype(np.float32)


def training_centers(mask: np.ndarray, patch: int, rng: np.random.Generator) -> np.ndarray:
    """FLamby's fast sampler: the patch centers, random ones first, then those on nodules."""
    shape = np.array(mask.shape)
    n_positive = int(np.floor(N_PATCHES * RATIO))
    positives = np.argwhere(mask > 0)
    if len(positives) == 0:
        n_positive = 0
    gaussian = np.rint(rng.normal(shape // 2, (shape // 2) / 6, size=(N_PATCHES - n_positive, 3))).astype(int)
    chosen = positives[rng.integers(len(positives), size=n_positive)] if n_positive else np.empty((0, 3), int)
    shift = rng.integers(0, patch // 2, size=chosen.shape) - patch // 4  # the nodule is not always centered
    centers = np.concatenate([gaussian, chosen + shift])
    return np.clip(centers, patch // 2, shape - patch // 2)


def patches_at(volume: np.ndarray, centers: np.ndarray, patch: int) -> np.ndarray:
    half = patch // 2
    return np.stack([volume[z - half : z + half, y - half : y + half, x - half : x + half] for z, y, x in centers])


def all_patches(volume: np.ndarray, patch: int) -> np.ndarray:
    """The non-overlapping patches tiling ``volume`` (z-major order, as FLamby's unfold)."""
    n = volume.shape[0] // patch
    tiles = volume.reshape(n, patch, n, patch, n, patch).transpose(0, 2, 4, 1, 3, 5)
    return tiles.reshape(-1, patch, patch, patch)


class FedLidcIdri(Dataset):
    """Manufacturer ``center``'s train or test scans (FLamby's split), or all with ``pooled``. Items:
    ``(X, y)`` of shape (patches, 1, p, p, p), float32 CT in [0, 1] and the nodule mask. ``crop_size`` (384)
    and ``patch_size`` (128) are FLamby's; a patch must tile the crop and be a multiple of 16 (VNet).
    ``data_path``: the dataset folder (default ``<data root>/fed_lidc_idri``)."""

    heavy_loading = True  # per-item CPU work (patches, augmentation): on a GPU, loaded in worker processes

    def __init__(
        self,
        center: int = 0,
        train: bool = True,
        pooled: bool = False,
        debug: bool = False,
        data_path: str | os.PathLike | None = None,
        crop_size: int = CROP_SIZE,
        patch_size: int = PATCH_SIZE,
    ):
        if crop_size % patch_size or patch_size % 16:
            raise ValueError(
                f"patch_size must divide crop_size and be a multiple of 16, got {patch_size} and {crop_size}"
            )
        self.cache, scans = open_split(
            SOURCE, data_path, CACHE_VERSION, "scans.csv", center, train, pooled, NUM_CLIENTS
        )
        self.center, self.train, self.pooled = center, train, pooled
        self.crop_size, self.patch_size = crop_size, patch_size
        self.uids = scans["uid"].tolist()

    def __len__(self) -> int:
        return len(self.uids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.get_batch(torch.tensor([i]))

    def scan(self, i: int, normalized: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Scan ``i`` cropped or padded to ``crop_size``^3: (CT, ClipNorm'ed unless ``normalized`` is False; mask)."""
        import nibabel

        folder = self.cache / self.uids[i]
        volume = np.asarray(nibabel.load(folder / "patient.nii", mmap=True).dataobj)
        mask = np.asarray(nibabel.load(folder / "mask_consensus.nii", mmap=True).dataobj)
        volume = crop_or_pad(volume, self.crop_size)
        return clip_norm(volume) if normalized else volume, crop_or_pad(mask, self.crop_size)

    def get_batch(self, indices: torch.Tensor, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The patches of the scans ``indices``, concatenated; training centers drawn from ``seed``."""
        seed = batch_seed(seed)
        images, masks = [], []
        for j, i in enumerate(torch.as_tensor(indices).reshape(-1).tolist()):
            volume, mask = self.scan(i, normalized=False)  # ClipNorm on the patches only: the same values, less work
            if self.train:
                centers = training_centers(mask, self.patch_size, np.random.default_rng(derive_seed(seed, j)))
                images.append(clip_norm(patches_at(volume, centers, self.patch_size)))
                masks.append(patches_at(mask, centers, self.patch_size))
            else:
                images.append(clip_norm(all_patches(volume, self.patch_size)))
                masks.append(all_patches(mask, self.patch_size))
        X = torch.from_numpy(np.concatenate(images))[:, None]
        y = torch.from_numpy(np.concatenate(masks).astype(np.float32))[:, None]
        return X, y

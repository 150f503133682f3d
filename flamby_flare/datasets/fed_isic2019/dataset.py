"""``FedIsic2019``: FLamby's Fed-ISIC2019 dataset (6 centers, 8-class dermoscopy) over the preprocessed cache
(``flamby-flare preprocess fed_isic2019``), memory-mapped."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset

from flamby_flare.datasets.cache import open_split
from flamby_flare.datasets.fed_isic2019.common import NUM_CLIENTS, SOURCE
from flamby_flare.datasets.fed_isic2019.preprocess import CACHE_VERSION
from flamby_flare.datasets.fed_isic2019.transforms import test_transform, train_transform
from flamby_flare.datasets.tensor_dataset import batch_seed


class FedIsic2019(Dataset):
    """Center ``center``'s train or test images (FLamby's split), or all centers' with ``pooled``.
    Items: ``(X, y)``, X a normalized float (3, 200, 200), y the class (int64). ``augment`` (default: for the
    train set) applies FLamby's training augmentations, else the central crop. ``data_path``: the dataset
    folder (default ``<data root>/fed_isic2019``)."""

    heavy_loading = True  # per-image CPU work (augmentation): on a GPU the executor loads it in worker processes

    def __init__(
        self,
        center: int = 0,
        train: bool = True,
        pooled: bool = False,
        debug: bool = False,
        data_path: str | os.PathLike | None = None,
        augment: bool | None = None,
    ):
        cache, table = open_split(SOURCE, data_path, CACHE_VERSION, "images.csv", center, train, pooled, NUM_CLIENTS)
        self.center, self.train, self.pooled = center, train, pooled
        self.augment = train if augment is None else augment
        self.images = table["image"].tolist()
        self.targets = torch.as_tensor(table["target"].to_numpy(), dtype=torch.int64)
        self._where = table[["offset", "height", "width"]].to_numpy(np.int64)
        self._pixels = np.load(cache / "pixels.npy", mmap_mode="r")

    def __len__(self) -> int:
        return len(self.images)

    def image(self, i: int) -> torch.Tensor:
        """Image ``i`` as cached: uint8 (3, H, W)."""
        offset, height, width = self._where[i]
        hwc = np.array(self._pixels[offset : offset + height * width * 3]).reshape(height, width, 3)
        return torch.from_numpy(hwc).permute(2, 0, 1)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        X, y = self.get_batch(torch.tensor([i]))
        return X[0], y[0]

    def get_batch(self, indices: torch.Tensor, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples ``indices`` stacked; with augmentation, every draw comes from ``seed`` (None: from torch's
        global generator), so a batch depends only on (indices, seed)."""
        indices = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
        if self.augment:
            generator = torch.Generator()
            generator.manual_seed(batch_seed(seed))
            views = [train_transform(self.image(int(i)), generator) for i in indices]
        else:
            views = [test_transform(self.image(int(i))) for i in indices]
        X = torch.stack(views) if views else torch.empty(0, 3, 200, 200)
        return X, self.targets[indices]

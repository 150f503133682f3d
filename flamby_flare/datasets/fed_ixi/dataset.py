"""``FedIXITiny``: FLamby's Fed-IXI dataset (3 hospitals, T1 brain-mask segmentation) over the preprocessed
cache (``flamby-flare preprocess fed_ixi``), memory-mapped so the sites of one machine share the page cache."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset

from flamby_flare.datasets.cache import open_split
from flamby_flare.datasets.fed_ixi.common import NUM_CLIENTS, SOURCE
from flamby_flare.datasets.fed_ixi.preprocess import CACHE_VERSION


class FedIXITiny(Dataset):
    """Center ``center``'s train or test subjects (FLamby's split), or all centers' with ``pooled``.
    Items: ``(X, y)`` with X (1, 48, 60, 48) float32 and y (2, 48, 60, 48) float32 one-hot.
    ``data_path``: the dataset folder (default ``<data root>/fed_ixi``)."""

    def __init__(
        self,
        center: int = 0,
        train: bool = True,
        pooled: bool = False,
        debug: bool = False,
        data_path: str | os.PathLike | None = None,
    ):
        cache, subjects = open_split(
            SOURCE, data_path, CACHE_VERSION, "subjects.csv", center, train, pooled, NUM_CLIENTS
        )
        self.center, self.train, self.pooled = center, train, pooled
        self.rows = subjects.index.to_numpy()
        self._images = np.load(cache / "images.npy", mmap_mode="r")
        self._labels = np.load(cache / "labels.npy", mmap_mode="r")

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        X, y = self.get_batch(torch.tensor([i]))
        return X[0], y[0]

    def get_batch(self, indices: torch.Tensor, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples ``indices`` stacked (no augmentation: FLamby trains Fed-IXI without; ``seed`` is unused)."""
        rows = self.rows[np.asarray(indices, dtype=np.int64)]
        order = np.argsort(rows, kind="stable")  # memory-mapped reads in file order, returned in the asked order
        X = np.empty((len(rows), *self._images.shape[1:]), np.float32)
        y = np.empty((len(rows), *self._labels.shape[1:]), np.float32)
        X[order] = self._images[rows[order]]
        y[order] = self._labels[rows[order]]
        return torch.from_numpy(X), torch.from_numpy(y)

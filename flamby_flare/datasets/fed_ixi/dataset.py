"""``FedIXITiny``: FLamby's Fed-IXI dataset (3 hospitals, T1 brain-mask segmentation) over the
preprocessed cache (``preprocess``), memory-mapped so several sites share the page cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from flamby_flare.datasets.fed_ixi.preprocess import CACHE_MARKER

NUM_CENTERS = 3


class FedIXITiny(Dataset):
    """Center ``center``'s train or test subjects (FLamby's split), or all centers' with ``pooled``.
    Items: ``(X, y)`` with X (1, 48, 60, 48) float32 and y (2, 48, 60, 48) float32 one-hot."""

    def __init__(self, center: int = 0, train: bool = True, pooled: bool = False, data_path: str | os.PathLike | None = None):
        if data_path is None:
            raise ValueError("FedIXITiny needs data_path, the preprocessed cache folder")
        cache = Path(data_path)
        if not (cache / CACHE_MARKER).is_file():
            raise FileNotFoundError(f"no preprocessed Fed-IXI cache at {cache}: run `flamby-flare preprocess fed_ixi`")
        if not pooled and not 0 <= center < NUM_CENTERS:
            raise ValueError(f"Fed-IXI has centers 0..{NUM_CENTERS - 1}, not {center}")
        subjects = pd.read_csv(cache / "subjects.csv")
        keep = subjects["split"] == ("train" if train else "test")
        if not pooled:
            keep &= subjects["center"] == center
        self.indices = np.flatnonzero(keep.to_numpy())
        self.centers = subjects["center"].to_numpy()[self.indices]
        self._images = np.load(cache / "images.npy", mmap_mode="r")
        self._labels = np.load(cache / "labels.npy", mmap_mode="r")

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        X, y = self.get_batch(torch.tensor([i]))
        return X[0], y[0]

    def get_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.indices[np.asarray(indices, dtype=np.int64)]
        order = np.argsort(rows)  # memory-mapped reads in file order, returned in the asked order
        X = np.empty((len(rows), *self._images.shape[1:]), np.float32)
        y = np.empty((len(rows), *self._labels.shape[1:]), np.float32)
        X[order] = self._images[rows[order]]
        y[order] = self._labels[rows[order]]
        return torch.from_numpy(X), torch.from_numpy(y)

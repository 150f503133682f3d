"""``FedCamelyon16``: FLamby's Fed-Camelyon16 dataset (2 hospitals, slide-level tumor detection) over the
tiles' features (``flamby-flare preprocess fed_camelyon16``), memory-mapped.

As FLamby: the slides in FLamby's order (the names sorted, then ``random.seed(0); random.shuffle``), then those
of the center and split; a slide's tiles in ``np.random.default_rng(42).permutation`` order, truncated to
``max_tiles`` (FLamby: 10,000) and zero-padded to it, so every item is (max_tiles, 2048). ResNet features
are non-negative and no real tile's are all zero, so the zero rows mark the padding (``model.Baseline``
masks them).
"""

from __future__ import annotations

import os
import random

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from flamby_flare.datasets.cache import open_split
from flamby_flare.datasets.fed_camelyon16.common import FEATURES, MAX_TILES, NUM_CLIENTS, SOURCE
from flamby_flare.datasets.fed_camelyon16.preprocess import CACHE_VERSION


class FedCamelyon16(Dataset):
    """Hospital ``center``'s train or test slides, or both hospitals' with ``pooled``. Items: ``(X, y)``, X the
    (max_tiles, 2048) float32 features, y the (1,) float32 label (1 = tumor). ``data_path``: the dataset folder
    (default ``<data root>/fed_camelyon16``)."""

    def __init__(
        self,
        center: int = 0,
        train: bool = True,
        pooled: bool = False,
        debug: bool = False,
        data_path: str | os.PathLike | None = None,
        max_tiles: int = MAX_TILES,
    ):
        self.cache, slides = open_split(
            SOURCE, data_path, CACHE_VERSION, "slides.csv", center, train, pooled, NUM_CLIENTS
        )
        everything = sorted(pd.read_csv(self.cache / "slides.csv")["slide"])
        random.Random(0).shuffle(everything)  # FLamby's order
        chosen = set(slides["slide"])
        self.slides = [s for s in everything if s in chosen]
        label = dict(zip(slides["slide"], slides["label"]))
        self.labels = torch.tensor([[float(label[s])] for s in self.slides])
        self.center, self.train, self.pooled, self.max_tiles = center, train, pooled, max_tiles

    def __len__(self) -> int:
        return len(self.slides)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        X, y = self.get_batch(torch.tensor([i]))
        return X[0], y[0]

    def features(self, i: int) -> np.ndarray:
        """Slide ``i``'s tile features in FLamby's tile order, truncated and zero-padded to ``max_tiles``."""
        tiles = np.load(self.cache / "features" / f"{self.slides[i]}.npy", mmap_mode="r")
        order = np.random.default_rng(42).permutation(len(tiles))[: self.max_tiles]
        out = np.zeros((self.max_tiles, FEATURES), np.float32)
        out[: len(order)] = tiles[order]
        return out

    def get_batch(self, indices: torch.Tensor, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Slides ``indices`` stacked (no augmentation; ``seed`` is unused)."""
        indices = torch.as_tensor(indices).reshape(-1)
        X = (
            torch.from_numpy(np.stack([self.features(int(i)) for i in indices]))
            if len(indices)
            else torch.zeros(0, self.max_tiles, FEATURES)
        )
        return X, self.labels[indices]

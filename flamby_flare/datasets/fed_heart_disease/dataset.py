"""Fed-Heart-Disease: the UCI heart-disease files of four hospitals, loaded as FLamby does (reference §1.7).

Per center file: '?' is missing; columns 10-12 (slope, ca, thal) are dropped, then rows with a missing
value; the center is split 66/34 with ``train_test_split(random_state=43)``, stratified on the binary
label. The centers are concatenated, ``cp`` and ``restecg`` dummy-encoded (drop_first), the label
binarized (num > 0), and features z-scored with the train statistics of the center (or of the pooled
train set when ``pooled=True``), ``(x - mean) / (std + 1e-9)`` with the unbiased std.

Deviation: FLamby concatenates the centers in ``glob`` order (filesystem-dependent); here they are always
in center order 0..3, which only changes the row order of pooled datasets.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split

from flamby_flare.datasets.fed_heart_disease.common import NUM_CLIENTS, SOURCE
from flamby_flare.datasets.tensor_dataset import TensorFedDataset, check_center
from flamby_flare.download import locate_dataset

FEATURE_NAMES = (
    "age", "sex", "trestbps", "chol", "fbs", "thalach", "exang", "oldpeak",
    "cp_2", "cp_3", "cp_4", "restecg_1", "restecg_2",
)
_TRAIN_FRACTION = 0.66


class _Table:
    """All rows of the four centers: raw features, binary labels, center ids and train mask."""

    def __init__(self, folder: Path):
        frames, centers, is_train = [], [], []
        for center, remote in enumerate(SOURCE.files):
            df = pd.read_csv(folder / remote.name, header=None, na_values="?")
            df = df.drop(columns=[10, 11, 12]).dropna(axis=0).apply(pd.to_numeric)
            n = len(df)
            binary = (df[13] > 0).astype(int).to_numpy()
            levels, counts = np.unique(binary, return_counts=True)
            stratify = binary if len(levels) > 1 and (counts > 2).all() else None
            _, test_idx = train_test_split(
                np.arange(n), test_size=1.0 - _TRAIN_FRACTION, train_size=_TRAIN_FRACTION,
                random_state=43, shuffle=True, stratify=stratify,
            )
            train = np.ones(n, dtype=bool)
            train[test_idx] = False
            frames.append(df)
            centers.append(np.full(n, center))
            is_train.append(train)
        table = pd.concat(frames, ignore_index=True)
        labels = table.pop(13)
        features = pd.get_dummies(table, columns=[2, 6], drop_first=True)
        self.X = torch.from_numpy(features.to_numpy(dtype=np.float32))
        self.y = torch.from_numpy((labels.to_numpy() > 0).astype(np.float32))[:, None]
        self.centers = torch.from_numpy(np.concatenate(centers))
        self.is_train = torch.from_numpy(np.concatenate(is_train))

    def stats(self, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.X[mask & self.is_train]
        return rows.mean(dim=0), rows.std(dim=0)


@lru_cache(maxsize=8)
def _load(folder: str) -> _Table:
    return _Table(Path(folder))


class FedHeartDisease(TensorFedDataset):
    """One center's (or the pooled) train or test set; items are ``(X[13], y[1])`` float tensors."""

    def __init__(
        self,
        center: int = 0,
        train: bool = True,
        pooled: bool = False,
        X_dtype: torch.dtype = torch.float32,
        y_dtype: torch.dtype = torch.float32,
        data_path: str | os.PathLike | None = None,
        normalize: bool = True,
    ):
        check_center(center, pooled, NUM_CLIENTS)
        folder = locate_dataset(SOURCE, data_path)
        table = _load(str(folder))
        centers = torch.ones_like(table.centers, dtype=torch.bool) if pooled else table.centers == center
        rows = centers & (table.is_train if train else ~table.is_train)
        X = table.X[rows]
        if normalize:
            mean, std = table.stats(centers)
            X = (X - mean) / (std + 1e-9)
        self.center, self.train, self.pooled = center, train, pooled
        self.X = X.to(X_dtype)
        self.y = table.y[rows].to(y_dtype)

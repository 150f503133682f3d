"""Fed-Synthetic as FLamby loads it: each center's ``<center>.data`` rows (features, then the class), split
66/34 with ``train_test_split(random_state=43, shuffle=True)``, stratified on class 0 against the others when
both have more than 2 rows (FLamby's rule); no normalization. Items are ``(X[d], y[1])`` float tensors."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from flamby_flare.datasets.fed_synthetic.common import SOURCE, center_file, parameters
from flamby_flare.datasets.tensor_dataset import TensorFedDataset, check_center
from flamby_flare.download import locate_dataset
from flamby_flare.errors import DatasetFormatError

_TRAIN_FRACTION = 0.66


@lru_cache(maxsize=64)
def _load(path: str, n_features: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One center's features, classes and train mask."""
    from sklearn.model_selection import train_test_split

    try:
        table = np.loadtxt(path, delimiter=",", ndmin=2)
    except ValueError:
        raise DatasetFormatError(f"{Path(path).name} is not rows of comma-separated numbers") from None
    if table.shape[1] != n_features + 1:
        raise DatasetFormatError(f"{Path(path).name} has {table.shape[1]} columns, expected {n_features + 1}")
    if not np.isfinite(table).all():
        raise DatasetFormatError(f"{Path(path).name} holds a value that is not a finite number")
    binary = (table[:, -1] != 0).astype(int)
    levels, counts = np.unique(binary, return_counts=True)
    stratify = binary if len(levels) > 1 and (counts > 2).all() else None
    _, test = train_test_split(
        np.arange(len(table)),
        test_size=1.0 - _TRAIN_FRACTION,
        train_size=_TRAIN_FRACTION,
        random_state=43,
        shuffle=True,
        stratify=stratify,
    )
    is_train = torch.ones(len(table), dtype=torch.bool)
    is_train[torch.as_tensor(test)] = False
    return (
        torch.from_numpy(table[:, :-1].astype(np.float32)),
        torch.from_numpy(table[:, -1:].astype(np.float32)),
        is_train,
    )


class FedSynthetic(TensorFedDataset):
    """One center's (or the pooled) train or test set of the generated dataset in ``data_path`` (default:
    ``<data root>/fed_synthetic``)."""

    def __init__(
        self,
        center: int = 0,
        train: bool = True,
        pooled: bool = False,
        X_dtype: torch.dtype = torch.float32,
        y_dtype: torch.dtype = torch.float32,
        debug: bool = False,
        data_path: str | os.PathLike | None = None,
    ):
        folder = locate_dataset(SOURCE, data_path)
        p = parameters(folder)
        check_center(center, pooled, int(p["n_centers"]))
        wanted = range(int(p["n_centers"])) if pooled else [center]
        parts = [_load(str(folder / center_file(c)), int(p["n_features"])) for c in wanted]
        self.center, self.train, self.pooled = center, train, pooled
        self.X = torch.cat([X[mask == train] for X, _, mask in parts]).to(X_dtype)
        self.y = torch.cat([y[mask == train] for _, y, mask in parts]).to(y_dtype)

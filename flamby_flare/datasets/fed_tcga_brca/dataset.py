"""Fed-TCGA-BRCA: breast-cancer survival from clinical features, 6 regions (reference §1.4).

``brca.csv`` columns 1..39 are the features (age in years, not normalized, then 38 one-hot columns) and
40..41 are (E, T): the event indicator and the time in days. Rows keep ``brca.csv``'s order; a center's
patients are those whose ``train_test_split.csv`` ``fold2`` is ``train_k``/``test_k`` (``fold`` for the
pooled sets), so the 8 patients of the "Other" region belong to no center, as in FLamby.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from flamby_flare.datasets.fed_tcga_brca.common import NUM_CLIENTS, SOURCE
from flamby_flare.datasets.tensor_dataset import TensorFedDataset, check_center
from flamby_flare.download import locate_dataset
from flamby_flare.errors import DatasetFormatError


@lru_cache(maxsize=8)
def _load(folder: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``brca.csv`` and the split, checked: a file not in its layout is refused in one line naming the file and
    the column (and the row), never a value."""
    root = Path(folder)
    data, split = pd.read_csv(root / "brca.csv"), pd.read_csv(root / "train_test_split.csv")
    if data.shape[1] != 42 or data.columns[0] != "pid":
        raise DatasetFormatError(f"brca.csv has {data.shape[1]} columns, expected 42: pid, the 39 features, E and T")
    for column in data.columns[1:]:
        if not pd.api.types.is_numeric_dtype(data[column]):
            raise DatasetFormatError(f"brca.csv column {column!r} is not numeric")
        bad = ~np.isfinite(data[column].to_numpy(dtype=np.float64))
        if bad.any():
            raise DatasetFormatError(f"brca.csv column {column!r} row {int(np.argmax(bad)) + 2}: missing or not finite")
    missing = [c for c in ("pid", "fold", "fold2") if c not in split.columns]
    if missing:
        raise DatasetFormatError(f"train_test_split.csv has no column {', '.join(missing)}")
    return data, split


class FedTcgaBrca(TensorFedDataset):
    """One region's (or the pooled) train or test set; items are ``(X[39], y[2] = (E, T))``."""

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
        check_center(center, pooled, NUM_CLIENTS)
        folder = locate_dataset(SOURCE, data_path)
        data, split = _load(str(folder))
        fold = "train" if train else "test"
        pids = (
            split.loc[split["fold"] == fold, "pid"]
            if pooled
            else split.loc[split["fold2"] == f"{fold}_{center}", "pid"]
        )
        rows = data[data["pid"].isin(pids)]
        self.center, self.train, self.pooled = center, train, pooled
        self.pids = rows["pid"].tolist()
        self.X = torch.from_numpy(rows.iloc[:, 1:40].to_numpy(dtype=np.float32)).to(X_dtype)
        self.y = torch.from_numpy(rows.iloc[:, 40:42].to_numpy(dtype=np.float32)).to(y_dtype)

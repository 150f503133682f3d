"""Fed-Heart-Disease: the UCI heart-disease files of four hospitals, loaded as FLamby does (reference §1.7).

Per center file: '?' is missing; columns 10-12 (slope, ca, thal) are dropped, then rows with a missing
value; the center is split 66/34 with ``train_test_split(random_state=43)``, stratified on the binary
label. ``cp`` and ``restecg`` are dummy-encoded (drop_first; FLamby encodes the concatenated centers, here
each center with the same fixed levels, which gives identical features and lets a site hold only its own
file), the label binarized (num > 0), and features z-scored with the train statistics of the center (or of the pooled
train set when ``pooled=True``), ``(x - mean) / (std + 1e-9)`` with the unbiased std.

Deviation: FLamby concatenates the centers in ``glob`` order (filesystem-dependent); here they are always
in center order 0..3, which only changes the row order of pooled datasets.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from flamby_flare.datasets.fed_heart_disease.common import NUM_CLIENTS, SOURCE
from flamby_flare.datasets.tensor_dataset import TensorFedDataset, check_center
from flamby_flare.download import locate_dataset
from flamby_flare.errors import DatasetFormatError

FEATURE_NAMES = (
    "age",
    "sex",
    "trestbps",
    "chol",
    "fbs",
    "thalach",
    "exang",
    "oldpeak",
    "cp_2",
    "cp_3",
    "cp_4",
    "restecg_1",
    "restecg_2",
)
_TRAIN_FRACTION = 0.66


# FLamby dummy-encodes cp and restecg over the four centers together; with their levels fixed here, a
# center's encoding does not depend on the other centers' files, so a site needs only its own file.
_DUMMY_LEVELS = {2: (1.0, 2.0, 3.0, 4.0), 6: (0.0, 1.0, 2.0)}


def _test_rows(path: Path, binary: np.ndarray) -> np.ndarray:
    """FLamby's split of one center's rows (``train_test_split(random_state=43)``, stratified on the binary
    label): the test rows. Kept beside the file, keyed by the file's SHA-256, so that a site's process does
    not import scikit-learn (about 1 s) at every start; an unwritable folder only skips the keeping."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    cache = path.with_name(f".{path.name}.split.json")
    try:
        kept = json.loads(cache.read_text())
        if kept["sha256"] == digest:
            return np.asarray(kept["test_rows"], dtype=np.int64)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    from sklearn.model_selection import train_test_split

    levels, counts = np.unique(binary, return_counts=True)
    stratify = binary if len(levels) > 1 and (counts > 2).all() else None
    _, test_idx = train_test_split(
        np.arange(len(binary)),
        test_size=1.0 - _TRAIN_FRACTION,
        train_size=_TRAIN_FRACTION,
        random_state=43,
        shuffle=True,
        stratify=stratify,
    )
    try:
        tmp = cache.with_name(cache.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"sha256": digest, "test_rows": [int(i) for i in test_idx]}))
        os.replace(tmp, cache)
    except OSError:
        pass
    return np.asarray(test_idx, dtype=np.int64)


_COLUMNS = 14  # age, sex, cp, trestbps, chol, fbs, restecg, thalach, exang, oldpeak, slope, ca, thal, num
_KEPT = [c for c in range(_COLUMNS) if c not in (10, 11, 12)]


def _read_table(path: Path) -> np.ndarray:
    """The file's rows as floats, ``?`` (missing) as NaN. A row that is not 14 numbers (a truncated line, a
    stray text or infinite cell) is refused in one line naming the file, row and column, never the value."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        cells = line.split(",")
        if len(cells) != _COLUMNS:
            raise DatasetFormatError(f"{path.name} row {number} has {len(cells)} columns, expected {_COLUMNS}")
        row = []
        for column, cell in enumerate(cells):
            try:
                value = math.nan if cell.strip() == "?" else float(cell)
            except ValueError:
                raise DatasetFormatError(f"{path.name} row {number} column {column}: not a number") from None
            if math.isinf(value):
                raise DatasetFormatError(f"{path.name} row {number} column {column}: not a finite number")
            row.append(value)
        rows.append(row)
    return np.array(rows, dtype=np.float64).reshape(-1, _COLUMNS)


class _Center:
    """One center's rows: features (dummy-encoded, not normalized), binary labels and the train mask."""

    def __init__(self, path: Path):
        table = _read_table(path)
        table = table[~np.isnan(table[:, _KEPT]).any(axis=1)]  # FLamby: drop columns 10-12, then incomplete rows
        labels = table[:, 13]
        binary = (labels > 0).astype(int)
        test_idx = _test_rows(path, binary)
        self.is_train = torch.ones(len(table), dtype=torch.bool)
        self.is_train[test_idx] = False
        # pandas.get_dummies(drop_first=True) over the fixed levels, the dummies after the other columns
        plain = [c for c in _KEPT if c not in _DUMMY_LEVELS and c != 13]
        dummies = [table[:, column] == level for column, levels in _DUMMY_LEVELS.items() for level in levels[1:]]
        features = np.column_stack([table[:, plain], *dummies]).astype(np.float32)
        self.X = torch.from_numpy(features)
        self.y = torch.from_numpy((labels > 0).astype(np.float32))[:, None]


@lru_cache(maxsize=32)
def _load(path: str) -> _Center:
    return _Center(Path(path))


def _rows(centers: list[_Center], train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    X = torch.cat([c.X[c.is_train == train] for c in centers])
    return X, torch.cat([c.y[c.is_train == train] for c in centers])


class FedHeartDisease(TensorFedDataset):
    """One center's (or the pooled) train or test set; items are ``(X[13], y[1])`` float tensors."""

    def __init__(
        self,
        center: int = 0,
        train: bool = True,
        pooled: bool = False,
        X_dtype: torch.dtype = torch.float32,
        y_dtype: torch.dtype = torch.float32,
        debug: bool = False,
        data_path: str | os.PathLike | None = None,
        normalize: bool = True,
    ):
        check_center(center, pooled, NUM_CLIENTS)
        wanted = list(range(NUM_CLIENTS)) if pooled else [center]
        folder = locate_dataset(SOURCE, data_path, centers=wanted)
        tables = [_load(str(folder / SOURCE.center_files[c][0])) for c in wanted]
        X, y = _rows(tables, train)
        if normalize:  # statistics of the train rows of the same center(s)
            train_X, _ = _rows(tables, True)
            X = (X - train_X.mean(dim=0)) / (train_X.std(dim=0) + 1e-9)
        self.center, self.train, self.pooled = center, train, pooled
        self.X = X.to(X_dtype)
        self.y = y.to(y_dtype)

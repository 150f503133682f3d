"""Fed-LIDC-IDRI's metric (reference §1.2): per scan, the soft (unthresholded) Dice over all its test patches,
sum(p y) / sum(0.5 (p + y)) (1 when the union is below 1e-7); a site's value is the mean over its scans
(``METRIC_PER_ITEM``: the evaluation calls ``metric`` once per scan)."""

from __future__ import annotations

import numpy as np


def metric(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y_true, y_pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    union = (0.5 * (y_true + y_pred)).sum()
    return 1.0 if union < 1e-7 else float((y_true * y_pred).sum() / union)

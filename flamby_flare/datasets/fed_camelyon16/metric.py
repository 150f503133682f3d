"""Fed-Camelyon16's metric (reference §1.1): the ROC AUC of the slide logits (scikit-learn); NaN where it cannot
be computed (one class only, NaN outputs)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def metric(y_true: np.ndarray, logits: np.ndarray) -> float:
    y = np.asarray(y_true).astype(np.uint8).reshape(-1)
    if len(np.unique(y)) < 2:  # AUC is undefined with one class (FLamby records NaN)
        return float("nan")
    return float(roc_auc_score(y, np.asarray(logits).reshape(-1)))

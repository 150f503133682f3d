"""Fed-ISIC2019's metric (reference §1.6): balanced accuracy of the arg-max class."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import balanced_accuracy_score


def metric(y_true: np.ndarray, logits: np.ndarray) -> float:
    return float(balanced_accuracy_score(np.asarray(y_true).reshape(-1), np.asarray(logits).argmax(axis=1)))

"""Fed-TCGA-BRCA metric: Harrell's concordance index of the risk score, via lifelines."""

import numpy as np
from lifelines.utils import concordance_index


def metric(y_true: np.ndarray, pred: np.ndarray) -> float:
    """``y_true`` is ``(n, 2)`` = (E, T); a higher score means higher risk, hence ``-pred``."""
    y_true = np.asarray(y_true)
    return float(concordance_index(y_true[:, 1], -np.asarray(pred).reshape(-1), y_true[:, 0]))

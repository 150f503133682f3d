"""Fed-KITS19's metric (reference §1.5): per test batch of 2 patches, the arg-max prediction's kidney Dice
(labels > 0) and tumor Dice (labels == 2), each 2 sum(a b) / (sum a + sum b + 1e-5) over the batch; the score
is their mean, averaged over batches (FLamby's ``evaluate_dice_on_tests`` with test batch size 2)."""

from __future__ import annotations

import numpy as np

TEST_BATCH = 2


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.logical_and(a, b).sum() / (a.sum() + b.sum() + 1e-5))


def metric(y_true: np.ndarray, logits: np.ndarray) -> float:
    """``y_true`` (N, 1, ...) labels, ``logits`` (N, 3, ...), in test-set order."""
    pred, true = (
        np.asarray(logits).argmax(axis=1),
        np.asarray(y_true).reshape(len(logits), *np.asarray(logits).shape[2:]),
    )
    scores = []
    for start in range(0, len(pred), TEST_BATCH):
        p, t = pred[start : start + TEST_BATCH], true[start : start + TEST_BATCH]
        scores.append((_dice(p > 0, t > 0) + _dice(p == 2, t == 2)) / 2)
    return float(np.mean(scores))

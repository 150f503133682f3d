"""Fed-IXI's loss (reference §1.3): the soft Dice loss over both channels."""

from __future__ import annotations

import torch
from torch import nn

SPATIAL = (2, 3, 4)


class BaselineLoss(nn.Module):
    """mean over (sample, channel) of 1 - 2 TP / (2 TP + FP + FN + eps), with soft counts summed over voxels:
    TP = sum p g, FP = sum p (1 - g), FN = sum (1 - p) g (``p`` the predicted probabilities, ``g`` one-hot)."""

    def __init__(self, eps: float = 1e-9):
        super().__init__()
        self.eps = eps

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        tp = (output * target).sum(SPATIAL)
        fp = (output * (1 - target)).sum(SPATIAL)
        fn = ((1 - output) * target).sum(SPATIAL)
        return (1 - 2 * tp / (2 * tp + fp + fn + self.eps)).mean()

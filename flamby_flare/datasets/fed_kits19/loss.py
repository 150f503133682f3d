"""Fed-KITS19's loss (reference §1.5): nnU-Net's ``DC_and_CE_loss`` (batch Dice over the foreground classes
of the softmax, smooth 1e-5, plus cross-entropy, summed), with MONAI's ``DiceCELoss``. nnU-Net adds -Dice,
MONAI 1 - Dice: the same gradients, values shifted by 1."""

from __future__ import annotations

import torch
from torch import nn


class BaselineLoss(nn.Module):
    def __init__(self):
        super().__init__()
        from monai.losses import DiceCELoss

        self.loss = DiceCELoss(
            include_background=False, to_onehot_y=True, softmax=True, batch=True, smooth_nr=1e-5, smooth_dr=1e-5
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss(logits, target)

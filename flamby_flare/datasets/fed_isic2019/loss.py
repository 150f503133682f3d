"""Fed-ISIC2019's loss (reference §1.6): FLamby's weighted focal loss, gamma = 2."""

from __future__ import annotations

import torch
from torch import nn

# FLamby's class weights: N_train_pooled / count per class, with train counts [3332, 9084, 2649, 712, 1950, 184, 201, 485]
CLASS_WEIGHTS = (5.5813, 2.0472, 7.0204, 26.1194, 9.5369, 101.0707, 92.5224, 38.3443)


class BaselineLoss(nn.Module):
    """mean_i [ -alpha_{y_i} (1 - p_{y_i})^gamma log p_{y_i} ], p = softmax(logits)."""

    def __init__(self, alpha: tuple[float, ...] = CLASS_WEIGHTS, gamma: float = 2.0):
        super().__init__()
        self.register_buffer("alpha", torch.tensor(alpha, dtype=torch.float32), persistent=False)
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = torch.log_softmax(logits, dim=1).gather(1, target.long().view(-1, 1)).squeeze(1)
        weight = self.alpha.to(logits.device)[target.long().view(-1)]
        return (-weight * (1 - log_p.exp()) ** self.gamma * log_p).mean()

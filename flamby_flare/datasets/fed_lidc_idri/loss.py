"""Fed-LIDC-IDRI's loss (reference §1.2): 1.0 (1 - dice) + 0.1 balanced cross-entropy, on probabilities.

dice = mean over patches of sum(p y) / sum(p y + 0.5 p (1 - y) + 0.5 (1 - p) y) (the union clamped at 1e-7;
1 for an empty union); balanced cross-entropy = -mean(w y log p + (1 - y) log(1 - p)), w = 1 / mean(y) - 1,
p clamped to [1e-7, 1 - 1e-7]."""

from __future__ import annotations

import torch
from torch import nn


def soft_dice(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    axes = tuple(range(1, p.ndim))
    intersection = (p * y).sum(axes)
    union = (p * y + 0.5 * p * (1 - y) + 0.5 * (1 - p) * y).sum(axes)
    return torch.where(union > 0, intersection / union.clamp_min(1e-7), torch.ones_like(union)).mean()


def balanced_cross_entropy(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    p = p.clamp(1e-7, 1 - 1e-7)
    w = 1 / y.mean().clamp_min(1e-7) - 1
    return -(w * y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()


class BaselineLoss(nn.Module):
    def forward(self, p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 1.0 * (1 - soft_dice(p, y)) + 0.1 * balanced_cross_entropy(p, y)

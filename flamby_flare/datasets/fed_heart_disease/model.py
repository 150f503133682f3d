"""Fed-Heart-Disease baseline: logistic regression on the 13 features, BCE loss (FLamby's)."""

import torch
from torch import nn


class Baseline(nn.Module):
    def __init__(self, input_dim: int = 13, output_dim: int = 1):
        super().__init__()
        self.linear = nn.Linear(input_dim, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.linear(x))


class BaselineLoss(nn.BCELoss):
    """Binary cross-entropy on the sigmoid output."""

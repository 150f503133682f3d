"""Fed-Synthetic's baseline and loss, FLamby's: a linear layer with a sigmoid output (one per class), and
cross-entropy on those outputs against the class index. Input and output sizes default to the generated
dataset's features and classes."""

from __future__ import annotations

import torch
from torch import nn

from flamby_flare.datasets.fed_synthetic.common import parameters


class Baseline(nn.Module):
    def __init__(self, input_dim: int | None = None, output_dim: int | None = None):
        super().__init__()
        p = parameters()
        self.linear = nn.Linear(input_dim or int(p["n_features"]), output_dim or int(p["n_clusters"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.linear(x))


class BaselineLoss(nn.Module):
    def __init__(self):
        super().__init__()
        self.ce = nn.CrossEntropyLoss()

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.ce(input, target.squeeze(dim=1).long())

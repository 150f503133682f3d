"""A dummy federated dataset and model for algorithm tests, with FLamby's names (``FedDummyDataset``,
``Baseline``, ``BaselineLoss``): random images and binary labels, a MobileNetV2 with one output.

Images are 3 x 16 x 16 (FLamby's are 224 x 224) and the MobileNetV2 is a quarter as wide (``WIDTH``; 0.24 M
parameters instead of 2.2 M), so that the strategy tests ported from FLamby run in seconds on a CPU: they
train in double precision, where a grouped convolution costs per channel whatever the image size (a step of
32 images: 0.33 CPU-s at full width, 0.14 at a quarter). The algorithms they check depend on neither.
Every item is drawn from torch's global generator when it is read, as FLamby's are.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

IMAGE_SIZE = 16
WIDTH = 0.25  # MobileNetV2's width multiplier (FLamby: 1)


class FedDummyDataset(Dataset):
    """``(center + 1) * 420`` random items (FLamby's sizes); ``pooled``, ``train`` and ``debug`` change nothing."""

    def __init__(
        self,
        center: int = 0,
        train: bool = True,
        pooled: bool = False,
        X_dtype: torch.dtype = torch.float32,
        y_dtype: torch.dtype = torch.float32,
        debug: bool = False,
    ):
        self.center, self.X_dtype, self.y_dtype = center, X_dtype, y_dtype
        self.size = (center + 1) * 10 * 42

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.rand(3, IMAGE_SIZE, IMAGE_SIZE).to(self.X_dtype), torch.randint(0, 2, (1,)).to(self.y_dtype))


class Baseline(torch.nn.Module):
    """torchvision's MobileNetV2 (random weights, BatchNorm, ``WIDTH`` wide) with a single logit."""

    def __init__(self):
        super().__init__()
        from torchvision import models

        self.architecture = models.mobilenet_v2(weights=None, width_mult=WIDTH)
        self.architecture.classifier = torch.nn.Linear(self.architecture.last_channel, 1)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.architecture(X)


class BaselineLoss(torch.nn.BCEWithLogitsLoss):
    """Binary cross-entropy on the logit."""

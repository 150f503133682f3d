"""Fed-ISIC2019's baseline: FLamby's, the ``efficientnet_pytorch`` package's EfficientNet-b0 (TF "same" padding
fixed for 224 px, BatchNorm eps 1e-3 / momentum 0.01, dropout 0.2, drop-connect 0.2, Swish) with its 1000-class
head replaced by an 8-class one, built in FLamby's order, so the same seed gives FLamby's initial weights (and
the same state-dict names, ``base_model.*``). ImageNet weights: the package's own file, which FLamby loads
(``efficientnet-b0-355c32eb.pth``), from a local path (nothing is downloaded here)."""

from __future__ import annotations

import os

import torch
from torch import nn

NUM_CLASSES = 8
ARCH = "efficientnet-b0"


class Baseline(nn.Module):
    """``pretrained_weights``: a local file with ``efficientnet_pytorch``'s ImageNet ``efficientnet-b0`` state
    dict (its 1000-class head, replaced after loading, as FLamby does); None trains from scratch (said in the
    results)."""

    def __init__(self, pretrained_weights: str | os.PathLike | None = None):
        super().__init__()
        from efficientnet_pytorch import EfficientNet

        self.base_model = EfficientNet.from_name(ARCH)
        if pretrained_weights is not None:
            state = torch.load(pretrained_weights, map_location="cpu", weights_only=True)
            try:
                self.base_model.load_state_dict(state)
            except (RuntimeError, AttributeError) as e:
                cause = " ".join(str(e).split())[:160]
                message = f"{pretrained_weights} is not an {ARCH} state dict of efficientnet_pytorch: {cause}"
                raise ValueError(message) from None
        self.base_model._fc = nn.Linear(self.base_model._fc.in_features, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_model(x)

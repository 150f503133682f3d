"""Fed-ISIC2019's baseline (reference §1.6): EfficientNet-b0 with an 8-class head. FLamby uses the
``efficientnet_pytorch`` package with ImageNet weights; here timm's ``efficientnet_b0`` (the same
architecture and parameter count, 4,017,796 with the 8-class head), with ImageNet weights loaded from a
local file when given (nothing is downloaded)."""

from __future__ import annotations

import os

import torch
from torch import nn

NUM_CLASSES = 8


class Baseline(nn.Module):
    """``pretrained_weights``: a local file with timm's ``efficientnet_b0`` ImageNet state dict (its
    1000-class head is dropped); None trains from scratch (say so in results)."""

    def __init__(self, pretrained_weights: str | os.PathLike | None = None):
        super().__init__()
        import timm

        self.net = timm.create_model("efficientnet_b0", pretrained=False, num_classes=NUM_CLASSES)
        if pretrained_weights is not None:
            state = torch.load(pretrained_weights, map_location="cpu", weights_only=True)
            state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
            missing, unexpected = self.net.load_state_dict(state, strict=False)
            if unexpected or set(missing) != {"classifier.weight", "classifier.bias"}:
                raise ValueError(
                    f"{pretrained_weights} is not an efficientnet_b0 state dict "
                    f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})"
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

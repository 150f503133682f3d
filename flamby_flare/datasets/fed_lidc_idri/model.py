"""Fed-LIDC-IDRI's baseline (reference §1.2): VNet (Milletari et al. 2016) as FLamby's, from MONAI: 16 input
features, 5x5x5 convolutions with BatchNorm and ELU, residual stages of 1/2/3/2 convolutions down and 2/2/1/1
up, Dropout3d 0.25 on the deep stages, a 1-channel output, then a sigmoid. MONAI's VNet has 45,595,445
parameters with biases (FLamby's, 45,596,309)."""

from __future__ import annotations

import torch
from torch import nn


class Baseline(nn.Module):
    def __init__(self):
        super().__init__()
        from monai.networks.nets import VNet

        self.net = VNet(
            spatial_dims=3,
            in_channels=1,
            out_channels=1,
            act=("elu", {"inplace": True}),
            dropout_prob_down=0.25,
            dropout_prob_up=(0.25, 0.25),
            dropout_dim=3,
            bias=True,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x))

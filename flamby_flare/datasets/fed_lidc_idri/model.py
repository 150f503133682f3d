"""Fed-LIDC-IDRI's baseline (reference §1.2): FLamby's VNet (Milletari et al. 2016), built from MONAI's: 16 input
features, 5x5x5 convolutions with BatchNorm and ELU, residual stages of 1/2/3/2 convolutions down and 2/2/1/1
up, Dropout3d 0.25 on the deep stages and on every skip connection, a 1-channel output, then a sigmoid. Two
changes to MONAI's VNet make it FLamby's: its up path's convolutions get their biases (45,596,309 parameters)
and its last two skip connections drop 0.25, not 0.5. Initialized as FLamby's: under the same seed, the same
weights."""

from __future__ import annotations

import torch
from torch import nn


class Baseline(nn.Module):
    def __init__(self):
        super().__init__()
        from monai.networks.nets import VNet

        start = torch.get_rng_state()
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
        for stage in (self.net.up_tr256, self.net.up_tr128, self.net.up_tr64, self.net.up_tr32):
            stage.dropout2.p = 0.25  # MONAI: 0.5 in the last two
            for block in stage.ops:
                conv = block.conv_block.conv
                if conv.bias is None:  # MONAI builds the up path's convolutions without bias
                    conv.bias = nn.Parameter(torch.empty(conv.out_channels))
        torch.set_rng_state(start)  # FLamby's draws, module by module in its order (the same as MONAI's)
        for module in self.net.modules():
            if isinstance(module, (nn.Conv3d, nn.ConvTranspose3d, nn.BatchNorm3d)):
                module.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x))

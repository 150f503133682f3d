"""Fed-IXI's baseline: the 3D U-Net FLamby trains (reference §1.3; the ``unet`` 0.7.7 package's U-Net
with 3 encoding levels, 8 first-layer channels, BatchNorm, PReLU, max pooling, trilinear upsampling and
padding 1; 246,156 parameters), written with plain torch layers. Output: per-voxel class probabilities."""

from __future__ import annotations

import torch
from torch import nn


def _conv(in_channels: int, out_channels: int, norm: bool = True) -> nn.Sequential:
    """3x3x3 convolution, then BatchNorm (its bias makes the convolution's redundant) and PReLU."""
    layers: list[nn.Module] = [nn.Conv3d(in_channels, out_channels, 3, padding=1, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm3d(out_channels))
    layers.append(nn.PReLU())
    return nn.Sequential(*layers)


class Baseline(nn.Module):
    """U-Net: encoder 1->8->16 | 16->16->32, bottom 32->32->64, decoder (64+32)->32->32 | (32+16)->16->16,
    1x1 classifier to ``out_classes``, softmax over channels. The very first convolution has no BatchNorm."""

    def __init__(self, in_channels: int = 1, out_classes: int = 2, width: int = 8):
        super().__init__()
        c = width
        self.enc1 = nn.Sequential(_conv(in_channels, c, norm=False), _conv(c, 2 * c))
        self.enc2 = nn.Sequential(_conv(2 * c, 2 * c), _conv(2 * c, 4 * c))
        self.bottom = nn.Sequential(_conv(4 * c, 4 * c), _conv(4 * c, 8 * c))
        self.dec2 = nn.Sequential(_conv(8 * c + 4 * c, 4 * c), _conv(4 * c, 4 * c))
        self.dec1 = nn.Sequential(_conv(4 * c + 2 * c, 2 * c), _conv(2 * c, 2 * c))
        self.classifier = nn.Conv3d(2 * c, out_classes, 1)
        self.pool = nn.MaxPool3d(2)
        self.up = nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip1 = self.enc1(x)
        skip2 = self.enc2(self.pool(skip1))
        x = self.bottom(self.pool(skip2))
        x = self.dec2(torch.cat((skip2, self.up(x)), dim=1))
        x = self.dec1(torch.cat((skip1, self.up(x)), dim=1))
        return torch.softmax(self.classifier(x), dim=1)

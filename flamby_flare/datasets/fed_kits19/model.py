"""Fed-KITS19's baseline (reference §1.5): nnU-Net's generic 3D U-Net as FLamby configures it, built with MONAI's
``DynUNet``: 32 base features doubling up to 320, two 3x3x3 convolutions per stage, instance normalization
(affine), leaky ReLU (0.01), strided-convolution downsampling with FLamby's pooling plan (four 2x2x2 then
one 1x2x2), transposed-convolution upsampling, no deep supervision, logits out (3 classes)."""

from __future__ import annotations

import math

import torch
from torch import nn

NUM_CLASSES = 3
STRIDES = ((1, 1, 1), (2, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2))
DOWNSAMPLING = tuple(math.prod(s[axis] for s in STRIDES) for axis in range(3))  # (16, 32, 32): input to bottom layer


class Baseline(nn.Module):
    def __init__(self):
        super().__init__()
        from monai.networks.nets import DynUNet

        self.net = DynUNet(
            spatial_dims=3,
            in_channels=1,
            out_channels=NUM_CLASSES,
            kernel_size=[(3, 3, 3)] * len(STRIDES),
            strides=STRIDES,
            upsample_kernel_size=STRIDES[1:],
            filters=[32, 64, 128, 256, 320, 320],
            norm_name=("INSTANCE", {"affine": True}),
            act_name=("leakyrelu", {"negative_slope": 0.01, "inplace": True}),
            deep_supervision=False,
            res_block=False,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

"""Fed-ISIC2019's augmentations (reference §1.6), FLamby's albumentations pipeline rebuilt on torchvision,
with every random draw taken from an explicit generator so a batch is a pure function of its seed.

Train, per image (uint8 (3, H, W), shorter side 224): one affine map (rotation U(-50, 50) degrees, scale
U(0.93, 1.07), shear U(-0.1, 0.1) degrees on each axis; bilinear), brightness/contrast
(x alpha + 255 beta, alpha in 1 +- 0.1, beta in +-0.15), a flip with p 0.5 (horizontal, vertical or both),
a random 200 x 200 crop, coarse dropout (1-8 holes of 16 x 16 set to 0), ImageNet normalization.
Test: the central 200 x 200 crop, normalized.

Deviations from FLamby, all minor: albumentations resizes (RandomScale) and rotates with reflected borders
before the crop; here scale and rotation are one affine map on the image's canvas with zero-filled borders.
FLamby draws the number of dropout holes once per dataset object (``random.randint(1, 8)`` at construction,
so one constant per run); here it is drawn per image from the same range.
"""

from __future__ import annotations

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

CROP = 200
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1) * 255
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1) * 255


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return float(low + (high - low) * torch.rand((), generator=generator))


def _randint(generator: torch.Generator, low: int, high: int) -> int:
    """Uniform integer in [low, high]."""
    return int(torch.randint(low, high + 1, (), generator=generator))


def normalize(image: torch.Tensor) -> torch.Tensor:
    return (image.float() - MEAN) / STD


def center_crop(image: torch.Tensor) -> torch.Tensor:
    """albumentations' CenterCrop: the top-left corner at ((H - 200) // 2, (W - 200) // 2)."""
    top, left = (image.shape[-2] - CROP) // 2, (image.shape[-1] - CROP) // 2
    return image[..., top : top + CROP, left : left + CROP]


def test_transform(image: torch.Tensor) -> torch.Tensor:
    return normalize(center_crop(image))


def train_transform(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One training view of ``image`` (uint8 (3, H, W)) as a normalized float (3, 200, 200)."""
    angle, scale = _uniform(generator, -50, 50), _uniform(generator, 0.93, 1.07)
    shear = [_uniform(generator, -0.1, 0.1), _uniform(generator, -0.1, 0.1)]
    x = F.affine(
        image, angle=angle, translate=[0, 0], scale=scale, shear=shear, interpolation=InterpolationMode.BILINEAR, fill=0
    ).float()
    alpha, beta = 1 + _uniform(generator, -0.1, 0.1), _uniform(generator, -0.15, 0.15)
    x = (x * alpha + 255 * beta).clamp_(0, 255)
    if torch.rand((), generator=generator) < 0.5:
        axes = ([-1], [-2], [-2, -1])[_randint(generator, 0, 2)]
        x = x.flip(axes)
    top, left = _randint(generator, 0, x.shape[-2] - CROP), _randint(generator, 0, x.shape[-1] - CROP)
    x = x[:, top : top + CROP, left : left + CROP].clone()
    for _ in range(_randint(generator, 1, 8)):
        y0, x0 = _randint(generator, 0, CROP - 16), _randint(generator, 0, CROP - 16)
        x[:, y0 : y0 + 16, x0 : x0 + 16] = 0
    return normalize(x)

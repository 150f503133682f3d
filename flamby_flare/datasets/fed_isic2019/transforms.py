"""Fed-ISIC2019's augmentations (reference §1.6), FLamby's albumentations pipeline rebuilt on torchvision,
with every random draw taken from an explicit generator so a batch is a pure function of its seed.

Train, per image (uint8 (3, H, W), shorter side 224), each step as albumentations 1.3.1 does it in FLamby:
RandomScale (p 0.5: resize by U(0.93, 1.07), bilinear), Rotate (p 0.5: U(-50, 50) degrees about the centre,
bilinear, borders reflected without repeating the edge, OpenCV's BORDER_REFLECT_101), RandomBrightnessContrast
(p 0.5: x alpha + 255 beta, alpha in 1 +- 0.1, beta in +-0.15), Flip (p 0.5: horizontal, vertical or both), Affine
(p 0.5: shear U(-0.1, 0.1) degrees on each axis, zero fill), a random 200 x 200 crop, CoarseDropout (p 0.5:
holes of 16 x 16 set to 0), ImageNet normalization. Test: the central 200 x 200 crop, normalized.

Deviations from FLamby: float arithmetic with torch's bilinear resampling where albumentations uses OpenCV on
uint8 (pixel values differ by rounding; the distributions are the same); FLamby draws the number of dropout
holes once per dataset object (``random.randint(1, 8)`` at construction, from Python's unseeded generator, so a
constant that changes from run to run), here it is drawn per image from the same range, so runs are
reproducible (the same mean, 4.5 holes).
"""

from __future__ import annotations

import math

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


def _coin(generator: torch.Generator) -> bool:
    """albumentations' p = 0.5."""
    return bool(torch.rand((), generator=generator) < 0.5)


def rotate_reflect(image: torch.Tensor, degrees: float) -> torch.Tensor:
    """``image`` (float (C, H, W)) rotated by ``degrees`` about its centre, bilinear, the borders reflected about
    the edge pixels (OpenCV's BORDER_REFLECT_101, albumentations' Rotate default)."""
    h, w = image.shape[-2:]
    theta = math.radians(degrees)
    cos, sin = math.cos(theta), math.sin(theta)
    # in pixel units about the centre, then to grid_sample's corner-aligned [-1, 1] coordinates
    rx, ry = (w - 1) / 2, (h - 1) / 2
    matrix = torch.tensor([[cos, -sin * ry / rx, 0.0], [sin * rx / ry, cos, 0.0]], dtype=torch.float32)
    grid = torch.nn.functional.affine_grid(matrix[None], [1, *image.shape], align_corners=True)
    return torch.nn.functional.grid_sample(
        image[None], grid, mode="bilinear", padding_mode="reflection", align_corners=True
    )[0]


def train_transform(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One training view of ``image`` (uint8 (3, H, W)) as a normalized float (3, 200, 200)."""
    g = generator
    x = image.float()
    if _coin(g):  # RandomScale(0.07): the canvas itself (int(h * s), int(w * s))
        s = _uniform(g, 0.93, 1.07)
        size = [int(x.shape[-2] * s), int(x.shape[-1] * s)]
        x = F.resize(x, size, interpolation=InterpolationMode.BILINEAR, antialias=False)
    if _coin(g):  # Rotate(50)
        x = rotate_reflect(x, _uniform(g, -50, 50))
    if _coin(g):  # RandomBrightnessContrast(0.15, 0.1)
        alpha, beta = 1 + _uniform(g, -0.1, 0.1), _uniform(g, -0.15, 0.15)
        x = (x * alpha + 255 * beta).clamp_(0, 255)
    if _coin(g):  # Flip
        axes = ([-1], [-2], [-2, -1])[_randint(g, 0, 2)]
        x = x.flip(axes)
    if _coin(g):  # Affine(shear=0.1)
        shear = [_uniform(g, -0.1, 0.1), _uniform(g, -0.1, 0.1)]
        x = F.affine(
            x, angle=0.0, translate=[0, 0], scale=1.0, shear=shear, interpolation=InterpolationMode.BILINEAR, fill=0
        )
    top, left = _randint(g, 0, x.shape[-2] - CROP), _randint(g, 0, x.shape[-1] - CROP)
    x = x[:, top : top + CROP, left : left + CROP].clone()
    if _coin(g):  # CoarseDropout(k, 16, 16): k holes of 16 x 16
        for _ in range(_randint(g, 1, 8)):
            y0, x0 = _randint(g, 0, CROP - 16), _randint(g, 0, CROP - 16)
            x[:, y0 : y0 + 16, x0 : x0 + 16] = 0
    return normalize(x)

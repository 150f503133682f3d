"""Whole-slide images to tissue tiles to features (reference §1.1, FLamby's ``tiling_slides.py``), with
tiffslide (OpenSlide's API on tifffile), NumPy/SciPy and torchvision.

- Tissue is found on a thumbnail (1/32 of level 0) as histolab does: a 10-pixel border of the thumbnail's mean
  color, RGB to grayscale, Otsu's threshold (tissue is darker), binary dilation (1), removal of objects under
  100 pixels.
- Tiles are 224 x 224 at level 1 on a grid without overlap; a tile is kept when at least 60 % of its area is
  tissue. Deviation: histolab measures the tissue fraction on the tile's own pixels; here on the thumbnail's
  mask (the same mask, at thumbnail resolution), which needs no read of discarded tiles.
- Features: ResNet50 (torchvision) without its classifier, 2048 per tile, the ImageNet transform of
  ``ResNet50_Weights.IMAGENET1K_V1`` (resize 256, center crop 224, normalize), batched on the GPU when there
  is one.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from flamby_flare.datasets.fed_camelyon16.common import LEVEL, MIN_TISSUE, TILE

THUMBNAIL_DOWNSAMPLE = 32
_BORDER = 10
_MIN_OBJECT = 100


def verify_slide(path: str | os.PathLike) -> None:
    """Raise ValueError unless ``path`` opens as a pyramidal slide with a level 1."""
    import tiffslide

    try:
        with tiffslide.TiffSlide(path) as slide:
            levels = slide.level_count
    except Exception as exc:  # noqa: BLE001 - tifffile raises many kinds for a bad file
        raise ValueError(f"not a whole-slide TIFF ({exc})") from None
    if levels <= LEVEL:
        raise ValueError(f"has {levels} level(s); tiling needs level {LEVEL}")


def otsu_threshold(gray: np.ndarray) -> float:
    """Otsu's threshold of an 8-bit image: the level that maximizes the between-class variance."""
    hist = np.bincount(gray.astype(np.uint8).ravel(), minlength=256).astype(np.float64)
    levels = np.arange(256)
    weight0 = np.cumsum(hist)
    weight1 = weight0[-1] - weight0
    mean0 = np.cumsum(hist * levels) / np.maximum(weight0, 1)
    mean1 = ((hist * levels).sum() - np.cumsum(hist * levels)) / np.maximum(weight1, 1)
    between = weight0 * weight1 * (mean0 - mean1) ** 2
    return float(levels[int(np.argmax(between[:-1]))])


def tissue_mask(thumbnail: np.ndarray) -> np.ndarray:
    """Boolean tissue mask of an RGB thumbnail (see the module docstring)."""
    from scipy import ndimage

    mean = thumbnail.reshape(-1, 3).mean(axis=0)
    framed = np.empty((thumbnail.shape[0] + 2 * _BORDER, thumbnail.shape[1] + 2 * _BORDER, 3), np.float64)
    framed[:] = mean
    framed[_BORDER:-_BORDER, _BORDER:-_BORDER] = thumbnail
    gray = framed @ np.array([0.299, 0.587, 0.114])
    mask = gray < otsu_threshold(np.rint(gray))
    mask = ndimage.binary_dilation(mask, iterations=1)
    labels, n = ndimage.label(mask)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= _MIN_OBJECT
    keep[0] = False
    return keep[labels][_BORDER:-_BORDER, _BORDER:-_BORDER]


def tile_coordinates(slide) -> np.ndarray:
    """Level-0 (x, y) of the top-left corners of the tissue tiles, row by row."""
    width0, height0 = slide.dimensions
    thumbnail = np.asarray(
        slide.get_thumbnail((width0 // THUMBNAIL_DOWNSAMPLE, height0 // THUMBNAIL_DOWNSAMPLE)).convert("RGB")
    )
    mask = tissue_mask(thumbnail)
    scale = slide.level_downsamples[LEVEL]
    width, height = slide.level_dimensions[LEVEL]
    per_pixel = np.array(mask.shape) / np.array([height0, width0])  # thumbnail pixels per level-0 pixel (y, x)
    coords = []
    for row in range(height // TILE):
        for col in range(width // TILE):
            y0, x0 = row * TILE * scale, col * TILE * scale
            y1, x1 = y0 + TILE * scale, x0 + TILE * scale
            ty0, tx0 = int(y0 * per_pixel[0]), int(x0 * per_pixel[1])
            ty1, tx1 = max(int(np.ceil(y1 * per_pixel[0])), ty0 + 1), max(int(np.ceil(x1 * per_pixel[1])), tx0 + 1)
            if mask[ty0:ty1, tx0:tx1].mean() >= MIN_TISSUE:
                coords.append((int(x0), int(y0)))
    return np.array(coords, dtype=np.int64).reshape(-1, 2)


RANDOM_WEIGHTS_SEED = 0  # without ImageNet weights, the random ones are always the same: caches stay comparable


def feature_extractor(weights: str | os.PathLike | None = None) -> torch.nn.Module:
    """torchvision's ResNet50 without its classifier, from a local ImageNet state dict (None: random weights,
    drawn from ``RANDOM_WEIGHTS_SEED`` whatever the caller's random state, which is left untouched)."""
    from torchvision.models import resnet50

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        model = resnet50()
    if weights is not None:
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    model.fc = torch.nn.Identity()
    return model.eval()


def _transform(tiles: torch.Tensor) -> torch.Tensor:
    """``ResNet50_Weights.IMAGENET1K_V1.transforms()`` on a uint8 batch (N, 3, 224, 224)."""
    from torchvision.transforms.v2 import functional as F

    x = F.resize(tiles, [256], antialias=True)
    x = F.center_crop(x, [224])
    x = x.float() / 255
    return F.normalize(x, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])


@torch.no_grad()
def slide_features(
    slide, coords: np.ndarray, model: torch.nn.Module, device: torch.device, batch_size: int = 64
) -> np.ndarray:
    """(n tiles, 2048) float32 features of the tiles at ``coords`` (level 0), read at level 1."""
    features = []
    for start in range(0, len(coords), batch_size):
        tiles = [
            slide.read_region((int(x), int(y)), LEVEL, (TILE, TILE), as_array=True)[..., :3]
            for x, y in coords[start : start + batch_size]
        ]
        batch = torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2)
        features.append(model(_transform(batch).to(device)).float().cpu().numpy())
    return np.concatenate(features) if features else np.zeros((0, 2048), np.float32)


def process_slide(
    path: Path, model: torch.nn.Module, device: torch.device, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """(tile coordinates, features) of one slide."""
    import tiffslide

    with tiffslide.TiffSlide(path) as slide:
        coords = tile_coordinates(slide)
        return coords, slide_features(slide, coords, model, device, batch_size)

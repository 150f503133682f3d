"""Fed-Camelyon16 throughput: tissue detection and tiling, feature extraction (tiles/s), and DeepMIL training
(slides/s) at FLamby's 10,000 tiles per slide.

A synthetic pyramidal slide (``tests/synthetic_images.write_slide``: JPEG tiles, 4 levels) of ``--size`` pixels
at level 0 with tissue over a quarter of it is tiled by ``tiling.tile_coordinates`` and its tissue tiles
featurized by ResNet50 (random weights: the cost is the same) on ``--device``.

Usage: python benchmarks/camelyon_tiles.py [--size 8192] [--device cpu] [--batch 64] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from flamby_flare.datasets.fed_camelyon16 import Baseline, BaselineLoss  # noqa: E402
from flamby_flare.datasets.fed_camelyon16.common import MAX_TILES  # noqa: E402
from flamby_flare.datasets.fed_camelyon16.tiling import feature_extractor, slide_features, tile_coordinates  # noqa: E402
from tests.synthetic_images import write_slide  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import tiffslide

    path = Path(tempfile.mkdtemp()) / "slide.tif"
    write_slide(path, size=args.size, tissue=(0, 0, args.size // 2, args.size // 2))
    device = torch.device(args.device)
    model = feature_extractor().to(device)
    with tiffslide.TiffSlide(path) as slide:
        start = time.perf_counter()
        coords = tile_coordinates(slide)
        tiling_s = time.perf_counter() - start
        slide_features(slide, coords[:2], model, device, args.batch)  # warm-up
        start = time.perf_counter()
        slide_features(slide, coords, model, device, args.batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        features_s = time.perf_counter() - start
    mil, loss_fn = Baseline().to(device), BaselineLoss()
    optimizer = torch.optim.SGD(mil.parameters(), lr=1e-3)
    X, y = torch.rand(16, MAX_TILES, 2048, device=device), torch.ones(16, 1, device=device)
    X[:, MAX_TILES // 2 :] = 0  # half padding
    times = []
    for _ in range(3):
        start = time.perf_counter()
        loss = loss_fn(mil(X), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    row = {
        "device": str(device),
        "threads": args.threads,
        "level0_pixels": args.size,
        "tiles": len(coords),
        "tiling_s": round(tiling_s, 3),
        "feature_tiles_per_s": round(len(coords) / features_s, 2),
        "mil_slides_per_s": round(16 / min(times[1:]), 2),
        "mil_batch": [16, MAX_TILES, 2048],
    }
    print(json.dumps(row, indent=2))
    if args.out:
        args.out.write_text(json.dumps(row, indent=2) + "\n")


if __name__ == "__main__":
    main()

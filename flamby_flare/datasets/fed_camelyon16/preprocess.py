"""Fed-Camelyon16 preprocessing (reference §1.1): every slide of FLamby's metadata to its tissue tiles and their
ResNet50 features (``tiling``), resumable per slide, with a progress display.

Cache: ``features/<slide>.npy`` (tiles, 2048) float32 and ``tiles/<slide>.csv`` (the tiles' level-0 x, y),
each written atomically once the slide is done, so an interrupted run continues with the next slide; and
``slides.csv`` (slide, center, split, label, tiles). The feature extractor's weights (their SHA-256, or none)
are recorded: features from other weights are recomputed, never mixed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from flamby_flare.datasets.cache import report_sizes, start_cache, write_record
from flamby_flare.datasets.fed_camelyon16.common import CENTER_NAMES, FLAMBY_SIZES, LABELS, METADATA, SOURCE
from flamby_flare.datasets.fed_camelyon16.tiling import feature_extractor, process_slide
from flamby_flare.download import sha256sum
from flamby_flare.progress import Progress

CACHE_VERSION = 1


def slides_table(folder: Path) -> pd.DataFrame:
    """FLamby's slides: name, center (the corrected hospital), split (test_* slides are test), label."""
    meta = pd.read_csv(folder / METADATA)
    labels = pd.read_csv(folder / LABELS)
    tumor = dict(zip(labels["filenames"].str.removesuffix(".npy"), labels["tumor"].astype(bool)))
    return pd.DataFrame(
        {
            "slide": meta["slide_name"],
            "center": meta["hospital_corrected"].astype(int),
            "split": np.where(meta["slide_name"].str.startswith("test"), "test", "train"),
            "label": [int(tumor[name]) for name in meta["slide_name"]],
        }
    )


def preprocess(
    folder: str | os.PathLike,
    log: Callable[[str], None] = print,
    weights: str | os.PathLike | None = None,
    device: str = "auto",
    batch_size: int = 64,
) -> Path:
    """Tile and featurize the slides present in ``folder``; ``weights``: torchvision's ResNet50 ImageNet state
    dict, a local file (None: random weights, stated in the record; for tests only)."""
    folder = Path(folder)
    table = slides_table(folder)
    table = table[[(folder / "slides" / name).is_file() for name in table["slide"]]].reset_index(drop=True)
    if table.empty:
        raise ValueError(f"no slide of {METADATA} in {folder / 'slides'}: run `flamby-flare download fed_camelyon16`")
    cache = start_cache(folder)
    (cache / "features").mkdir(exist_ok=True)
    (cache / "tiles").mkdir(exist_ok=True)
    extractor = {
        "model": "torchvision resnet50, fc removed",
        "weights_sha256": sha256sum(Path(weights)) if weights else None,
    }
    info = cache / "features" / ".extractor.json"
    if info.is_file() and json.loads(info.read_text()) != extractor:
        log("  the feature extractor changed: recomputing every slide's features")
        for stale in (cache / "features").glob("*.npy"):
            stale.unlink()
    info.write_text(json.dumps(extractor) + "\n")
    if weights is None:
        log("  WARNING: no --weights: features from a randomly initialized ResNet50 (FLamby uses ImageNet weights)")
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    model = feature_extractor(weights).to(dev)
    progress, counts, done_tiles, start = (
        Progress("Fed-Camelyon16 slides", len(table), log, unit="slide"),
        [],
        0,
        time.perf_counter(),
    )
    for i, name in enumerate(table["slide"]):
        features_path, tiles_path = cache / "features" / f"{name}.npy", cache / "tiles" / f"{name}.csv"
        if features_path.is_file() and tiles_path.is_file():  # done by an earlier run
            counts.append(len(pd.read_csv(tiles_path)))
        else:
            coords, features = process_slide(folder / "slides" / name, model, dev, batch_size)
            tmp = features_path.with_name(features_path.name + ".tmp.npy")
            np.save(tmp, features.astype(np.float32))
            os.replace(tmp, features_path)
            pd.DataFrame(coords, columns=["x", "y"]).to_csv(tiles_path.with_suffix(".tmp"), index=False)
            os.replace(tiles_path.with_suffix(".tmp"), tiles_path)
            counts.append(len(coords))
            done_tiles += len(coords)
        progress(i + 1)
    elapsed = time.perf_counter() - start
    table["tiles"] = counts
    table.to_csv(cache / "slides.csv", index=False)
    sizes = report_sizes(table["center"], table["split"], CENTER_NAMES, FLAMBY_SIZES, log)
    write_record(
        SOURCE,
        folder,
        CACHE_VERSION,
        slides=len(table),
        sizes=sizes,
        tiles=int(table["tiles"].sum()),
        extractor=extractor,
    )
    log(
        f"  cache: {cache} ({len(table)} slides, {int(table['tiles'].sum())} tiles; "
        f"{done_tiles / max(elapsed, 1e-9):.1f} tiles/s this run on {dev})"
    )
    return cache

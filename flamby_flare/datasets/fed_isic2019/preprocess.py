"""Fed-ISIC2019 preprocessing (reference §1.6), done once into the cache so training never repeats it.

Raw: the ISIC 2019 training archive (``ISIC_2019_Training_Input/<image>.jpg``), its metadata and ground-truth
CSVs, FLamby's ``HAM10000_metadata.csv`` and its ``train_test_split.csv``. Samples, centers and labels are
derived as FLamby does: images without a ``lesion_id`` are dropped; the center is the lesion id's prefix
(BCN, HAM, MSK), HAM split by HAM10000's ``dataset`` column; the label is the ground truth's class. They
must agree with FLamby's split file, which gives the train/test split. Per image, as FLamby's
``resize_images.py``: the shorter side resized to 224 (bilinear, aspect kept, sizes truncated), then
Shades-of-Gray color constancy (Finlayson and Trezzi 2004, power 6).

Cache: ``pixels.npy``, every image's RGB bytes (H, W, 3) one after the other (memory-mapped; about 4.7 GB for
the 23,247 images), and ``images.csv`` (image, center, target, split, offset, height, width). Deviation:
FLamby re-encodes the preprocessed images as JPEG (quality 75); the cache keeps them lossless.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from flamby_flare.datasets.cache import report_sizes, start_cache, write_record
from flamby_flare.datasets.fed_isic2019.common import (
    ARCHIVE,
    CENTER_NAMES,
    FLAMBY_SIZES,
    GROUND_TRUTH,
    HAM_METADATA,
    METADATA,
    SOURCE,
    SPLIT,
)
from flamby_flare.progress import Progress, parallel_map

CACHE_VERSION = 1
SHORTER_SIDE = 224
CLASSES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")
_HAM_CENTERS = {"vidir_molemax": 1, "vidir_modern": 2, "rosendahl": 3, "vienna_dias": 5}
_CHUNK = 256  # images per worker task


def verify_raw_file(name: str, path: str | os.PathLike) -> None:
    """Raise ValueError unless ``path`` has the layout of ISIC 2019's file ``name``."""
    if name == ARCHIVE:
        try:
            with zipfile.ZipFile(path) as archive:
                images = _archive_images(archive)
        except zipfile.BadZipFile as exc:
            raise ValueError(f"not a zip archive ({exc})") from None
        if not images:
            raise ValueError("holds no ISIC_2019_Training_Input/ISIC_*.jpg image")
        return
    wanted = {METADATA: ("image", "lesion_id"), GROUND_TRUTH: ("image", *CLASSES)}.get(name, ())
    columns = pd.read_csv(path, nrows=1).columns
    if missing := [c for c in wanted if c not in columns]:
        raise ValueError(f"lacks the columns {', '.join(missing)}")


def _archive_images(archive: zipfile.ZipFile) -> dict[str, str]:
    """image name -> archive member, for the archive's JPEG images."""
    return {
        Path(n).stem: n
        for n in archive.namelist()
        if n.startswith("ISIC_2019_Training_Input/") and Path(n).name.startswith("ISIC_") and n.endswith(".jpg")
    }


def samples(folder: str | os.PathLike) -> pd.DataFrame:
    """FLamby's samples (image, center, target, split), in its split file's order, derived from the ISIC CSVs
    and checked against the split file."""
    folder = Path(folder)
    meta = pd.read_csv(folder / METADATA).dropna(subset=["lesion_id"]).set_index("image")
    ham = pd.read_csv(folder / HAM_METADATA).set_index("image_id")["dataset"]
    truth = pd.read_csv(folder / GROUND_TRUTH).set_index("image")
    split = pd.read_csv(folder / SPLIT).set_index("image")
    if unknown := [i for i in split.index if i not in meta.index or i not in truth.index][:3]:
        raise ValueError(f"{SPLIT} lists images the ISIC CSVs lack (or give no lesion_id): {', '.join(unknown)}")
    lesion = meta.loc[split.index, "lesion_id"].astype(str)
    prefix = lesion.str.slice(0, 3)
    center = pd.Series(-1, index=split.index)
    center[prefix == "BCN"] = 0
    center[prefix == "MSK"] = 4
    is_ham = prefix == "HAM"
    center[is_ham] = ham.reindex(split.index[is_ham]).map(_HAM_CENTERS).fillna(-1).astype(int).to_numpy()
    target = truth.loc[split.index, list(CLASSES)].to_numpy().argmax(axis=1)
    wrong = (center.to_numpy() != split["center"].to_numpy()) | (target != split["target"].to_numpy())
    if wrong.any():
        raise ValueError(
            f"{int(wrong.sum())} images' center or label differ between the ISIC CSVs and {SPLIT}, "
            f"e.g. {split.index[wrong][0]}"
        )
    return pd.DataFrame(
        {"image": split.index, "center": center.to_numpy(), "target": target, "split": split["fold"].to_numpy()}
    )


def resized_size(width: int, height: int) -> tuple[int, int]:
    """FLamby's size: the shorter side to 224, the other scaled alike and truncated."""
    ratio = SHORTER_SIDE / min(width, height)
    return int(width * ratio), int(height * ratio)


def color_constancy(image: np.ndarray, power: float = 6) -> np.ndarray:
    """Shades of Gray: each channel scaled by 1 / (sqrt(3) e_c), e = the L2-normalized power-``power`` mean of
    the channels; clipped to [0, 255] and truncated back to uint8. FLamby's ``astype(uint8)`` has no clip, so a
    value above 255 wraps around (300 becomes 44): a bug, kept out here (2.7% of a saturated image's pixels)."""
    img = image.astype(np.float32)
    rgb = np.power(np.power(img, power).mean(axis=(0, 1)), 1 / power)
    rgb = rgb / np.sqrt(np.sum(rgb**2))
    return np.clip(img / (rgb * np.sqrt(3)), 0, 255).astype(np.uint8)


def preprocess_image(data, size: tuple[int, int]) -> np.ndarray:
    """One image (a JPEG file or bytes) to its cached (H, W, 3) uint8 array."""
    from PIL import Image

    with Image.open(data) as image:
        return color_constancy(np.asarray(image.convert("RGB").resize(size, Image.BILINEAR)))


def _work(archive_path: str, pixels_path: str, jobs: list[tuple[str, int, int, int]]) -> int:
    with zipfile.ZipFile(archive_path) as archive:
        pixels = np.load(pixels_path, mmap_mode="r+")
        for member, offset, height, width in jobs:
            with archive.open(member) as f:
                pixels[offset : offset + height * width * 3] = preprocess_image(f, (width, height)).reshape(-1)
        pixels.flush()
    return len(jobs)


def preprocess(folder: str | os.PathLike, log: Callable[[str], None] = print, workers: int | None = None) -> Path:
    """Build the cache of the downloaded dataset in ``folder`` over ``workers`` processes (default: all cores)."""
    from PIL import Image

    folder = Path(folder)
    table = samples(folder)
    with zipfile.ZipFile(folder / ARCHIVE) as archive:
        members = _archive_images(archive)
        table = table[table["image"].isin(members)].reset_index(drop=True)
        sizes = []
        for image in table["image"]:
            with archive.open(members[image]) as f, Image.open(f) as img:
                sizes.append(resized_size(*img.size))
    table["width"], table["height"] = [w for w, _ in sizes], [h for _, h in sizes]
    nbytes = (table["width"] * table["height"] * 3).to_numpy()
    table["offset"] = np.concatenate([[0], np.cumsum(nbytes)[:-1]]).astype(np.int64)
    cache = start_cache(folder)
    pixels_path = cache / "pixels.npy"
    np.lib.format.open_memmap(pixels_path, mode="w+", dtype=np.uint8, shape=(int(nbytes.sum()),)).flush()
    jobs = [(members[r.image], int(r.offset), int(r.height), int(r.width)) for r in table.itertuples()]
    chunks = [(str(folder / ARCHIVE), str(pixels_path), jobs[i : i + _CHUNK]) for i in range(0, len(jobs), _CHUNK)]
    parallel_map(_work, chunks, Progress("Fed-ISIC2019 images", len(jobs), log, unit="image"), workers, count=int)
    table[["image", "center", "target", "split", "offset", "height", "width"]].to_csv(cache / "images.csv", index=False)
    sizes = report_sizes(table["center"], table["split"], CENTER_NAMES, FLAMBY_SIZES, log)
    write_record(SOURCE, folder, CACHE_VERSION, images=len(table), sizes=sizes)
    log(f"  cache: {cache} ({len(table)} images, {nbytes.sum() / 2**30:.2f} GiB)")
    return cache

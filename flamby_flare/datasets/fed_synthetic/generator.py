"""Fed-Synthetic's generator: FLamby's classification process (``fed_synthetic/synthetic_generator.py``,
FLamby §"Synthetic"), with its four heterogeneity knobs, drawing the same random numbers in the same order.

- ``n_clusters`` class means on the unit sphere of R^``n_features`` (normal draws, normalized);
- sample repartition over ``n_centers``: equal (None), given weights (a list: a multinomial draw), or a
  power law of exponent a > 1 (weights (k + 1)^(1 - a), with 5 samples per center guaranteed);
- label heterogeneity: equal classes per center (None), or Dirichlet(``label_heterogeneity``) proportions
  (small: about one class per center; large: uniform);
- feature heterogeneity: each center moves the class means by ``features_heterogeneity`` x U[0, 1)^d;
- noise heterogeneity: per-center signal-to-noise ratios (samples ~ N(mean, 0.1 I / snr)), else ``snr``.

Deliberate deviations: FLamby seeds its generator with 42 whatever ``seed`` it is given; here ``seed`` is
used (seed 42 gives FLamby's dataset, value for value). FLamby's feature shift is added to the class means
in place, so center k's means carry the shifts of centers 0..k too; that is kept, as it is what FLamby's
datasets are. FLamby's regression mode is not offered: its dataset, baseline and metric are classification.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from flamby_flare.datasets.fed_synthetic.common import DEFAULTS, PARAMETERS_FILE, SOURCE, center_file

MIN_SAMPLES_PER_CENTER = 5  # FLamby's, for a power-law repartition
BYTES_PER_VALUE = 25  # a float64 written with 17 significant digits, its sign, exponent and separator
PROGRESS_FROM_VALUES = 10_000_000  # a progress bar while writing from this many values on (seconds of writing)


def _center_sizes(rng: np.random.Generator, n_centers: int, n_samples: int, repartition) -> list[int]:
    if repartition is None:
        return [n_samples // n_centers + (k < n_samples % n_centers) for k in range(n_centers)]
    if isinstance(repartition, (list, tuple)):
        weights = np.asarray(repartition, dtype=float)
        if len(weights) != n_centers or not np.isfinite(weights).all() or (weights <= 0).any():
            raise ValueError(
                f"sample_repartition must be {n_centers} weights > 0 (a center of weight 0 has no samples), "
                f"got {list(repartition)}"
            )
        positions = rng.choice(n_centers, size=n_samples, replace=True, p=weights / weights.sum())
        sizes = [int(np.sum(positions == k)) for k in range(n_centers)]
        if min(sizes) < 2:
            raise ValueError(
                f"sample_repartition {list(repartition)} gives center {sizes.index(min(sizes))} "
                f"{min(sizes)} of {n_samples} samples (at least 2 each): more samples or more even weights"
            )
        return sizes
    exponent = float(repartition)
    if not math.isfinite(exponent) or exponent <= 1:
        raise ValueError(f"a power-law sample_repartition must be > 1, got {exponent}")
    if n_samples <= MIN_SAMPLES_PER_CENTER * n_centers:
        raise ValueError(f"a power-law repartition needs more than {MIN_SAMPLES_PER_CENTER} samples per center")
    weights = np.array([(k + 1) ** (1 - exponent) for k in range(n_centers)])
    positions = rng.choice(
        n_centers, size=n_samples - MIN_SAMPLES_PER_CENTER * n_centers, replace=True, p=weights / weights.sum()
    )
    return [int(np.sum(positions == k)) + MIN_SAMPLES_PER_CENTER for k in range(n_centers)]


def _class_sizes(rng: np.random.Generator, size: int, n_clusters: int, heterogeneity) -> np.ndarray:
    if heterogeneity is None:
        return np.array([size // n_clusters + (c < size % n_clusters) for c in range(n_clusters)], dtype=float)
    counts = np.floor(rng.dirichlet(np.repeat(float(heterogeneity), n_clusters)) * size)
    missing = size - counts.sum()
    return counts + np.array([c < missing for c in range(n_clusters)])


def generate_synthetic_dataset(
    n_centers: int = 4,
    n_samples: int = 1000,
    n_features: int = 10,
    seed: int = 42,
    snr: float = 3.0,
    sample_repartition=None,
    noise_heterogeneity=None,
    features_heterogeneity: float | None = None,
    label_heterogeneity: float | None = None,
    n_clusters: int = 3,
) -> list[np.ndarray]:
    """Per center, its rows ``[x_1 .. x_d, label]`` (float64), grouped by class as FLamby writes them."""
    if noise_heterogeneity is not None and len(noise_heterogeneity) != n_centers:
        raise ValueError(f"noise_heterogeneity must be {n_centers} signal-to-noise ratios")
    rng = np.random.default_rng(seed)
    sizes = _center_sizes(rng, n_centers, n_samples, sample_repartition)
    snrs = (
        np.asarray(noise_heterogeneity, dtype=float)
        if noise_heterogeneity is not None
        else np.full(n_centers, float(snr))
    )
    means = rng.normal(size=[n_features, n_clusters])
    means = (means / np.linalg.norm(means, ord=2, axis=0).reshape(1, -1)).T
    class_sizes = [_class_sizes(rng, size, n_clusters, label_heterogeneity) for size in sizes]
    covariance = np.eye(n_features) * 0.1
    centers = []
    for k in range(n_centers):
        blocks = []
        for label in range(n_clusters):
            mean = means[label]  # a view: FLamby's shift accumulates over the centers (module docstring)
            if features_heterogeneity:
                mean += features_heterogeneity * rng.random(n_features)
            count = int(class_sizes[k][label])
            X = rng.multivariate_normal(mean=mean, cov=covariance / snrs[k], size=count)
            blocks.append(np.hstack((X, np.full((count, 1), float(label)))))
        centers.append(np.vstack(blocks) if blocks else np.empty((0, n_features + 1)))
    return centers


def check_parameters(parameters: dict) -> dict:
    """The generator's parameters, defaults filled in, each checked (one line naming it)."""
    unknown = set(parameters) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown generator parameter(s) {', '.join(sorted(unknown))}; known: {', '.join(DEFAULTS)}")
    p = {**DEFAULTS, **{k: v for k, v in parameters.items() if v is not None}}
    for name, low in (("n_centers", 1), ("n_samples", 1), ("n_features", 1), ("n_clusters", 2)):
        if isinstance(p[name], bool) or not isinstance(p[name], int) or p[name] < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {p[name]!r}")
    if p["n_samples"] < 2 * p["n_centers"]:
        raise ValueError(f"n_samples must give each of the {p['n_centers']} centers at least 2 samples")
    for name in ("snr", "features_heterogeneity", "label_heterogeneity"):
        value = p[name]
        if value is not None and not (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
        ):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    noise = p["noise_heterogeneity"]
    if noise is not None and not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in noise):
        raise ValueError(f"noise_heterogeneity must be finite signal-to-noise ratios > 0, got {noise!r}")
    return p


def check_size(p: dict, folder: Path) -> None:
    """Refuse, in one line with the figures, a dataset that would not fit this machine's free memory (its
    float64 rows, twice over while written) or the free space where it goes (about 25 bytes a value as text)."""
    import shutil

    values = p["n_samples"] * (p["n_features"] + 1)
    memory, disk = 2 * 8 * values, BYTES_PER_VALUE * values
    free_disk = shutil.disk_usage(folder if folder.exists() else folder.parent).free
    try:
        free_memory = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):  # not Linux: the disk check alone
        free_memory = memory
    gib = 1024**3
    if memory > free_memory or disk > free_disk:
        raise ValueError(
            f"n_samples {p['n_samples']} x {p['n_features'] + 1} columns needs about {memory / gib:.1f} GiB "
            f"of memory ({free_memory / gib:.1f} GiB free) and {disk / gib:.1f} GiB on disk "
            f"({free_disk / gib:.1f} GiB free at {folder.parent})"
        )


def generate(folder: str | os.PathLike, log=print, **parameters) -> Path:
    """Generate the dataset into ``folder`` (``<center>.data`` CSVs as FLamby writes them, the parameters,
    and the completion record with each file's SHA-256); returns the folder. It is written beside ``folder``
    first and swapped in whole: interrupted, the dataset there before is kept as it was."""
    import shutil

    from tqdm import tqdm

    from flamby_flare.download import sha256sum, write_completion_record

    p = check_parameters(parameters)
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    check_size(p, folder)
    new, old = (
        folder.with_name(f".{folder.name}.new-{os.getpid()}"),
        folder.with_name(f".{folder.name}.old-{os.getpid()}"),
    )
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir()
    try:
        centers = generate_synthetic_dataset(**p)
        quiet = sum(rows.size for rows in centers) < PROGRESS_FROM_VALUES
        for k, rows in enumerate(
            tqdm(centers, desc=f"{SOURCE.title}: writing", unit="center", leave=False, disable=quiet)
        ):
            np.savetxt(new / center_file(k), rows, delimiter=",", fmt="%.17g")
        (new / PARAMETERS_FILE).write_text(
            json.dumps({"parameters": p, "center_sizes": [len(r) for r in centers]}, indent=2) + "\n"
        )
        names = [PARAMETERS_FILE] + [center_file(k) for k in range(len(centers))]
        hashes = {name: sha256sum(new / name) for name in names}
        write_completion_record(SOURCE, new, hashes, hashes, generated=True)
        if folder.exists():
            os.replace(folder, old)
        os.replace(new, folder)
    finally:
        if old.exists() and not folder.exists():  # stopped between the two renames: the previous dataset back
            os.replace(old, folder)
        shutil.rmtree(new, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    log(
        f"{SOURCE.title}: {p['n_centers']} centers, {p['n_samples']} samples, {p['n_features']} features, "
        f"{p['n_clusters']} classes (sizes {[len(r) for r in centers]}) in {folder}"
    )
    return folder

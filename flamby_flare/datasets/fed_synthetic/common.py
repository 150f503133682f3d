"""Fed-Synthetic constants (FLamby's ``fed_synthetic``): a generated classification dataset whose number of
centers, samples, features and heterogeneity are chosen at generation (``flamby-flare generate``).

FLamby's constants are kept (batch 8, Adam lr 0.005, 10 pooled epochs, ``get_nb_max_rounds`` from the
generated size). ``NUM_CLIENTS`` and ``CENTER_NAMES`` are those of the dataset generated in the data root
(``FLAMBY_FLARE_DATA``, else the user cache), 4 before any generation (FLamby's ``NUM_CLIENTS``): its jobs
name no sites of their own (``@ALL``) and run on every center generated.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from flamby_flare.datasets.rounds import nb_max_rounds
from flamby_flare.download import DatasetSource, RemoteFile

BATCH_SIZE = 8
NUM_EPOCHS_POOLED = 10
LR = 0.005
METRIC_NAME = "accuracy"
DEFAULT_NUM_CLIENTS = 4
PARAMETERS_FILE = "generation.json"  # the generator's parameters and the centers' files
# FLamby's generator defaults (its download script), with FLamby's 4 clients.
DEFAULTS = {
    "n_centers": DEFAULT_NUM_CLIENTS,
    "n_samples": 1000,
    "n_features": 10,
    "seed": 42,
    "snr": 3.0,
    "sample_repartition": None,
    "noise_heterogeneity": None,
    "features_heterogeneity": None,
    "label_heterogeneity": None,
    "n_clusters": 3,
}


def center_file(center: int) -> str:
    return f"{center}.data"


def _listed(folder: Path, centers: list[int] | None) -> tuple[RemoteFile, ...]:
    n = parameters(folder)["n_centers"]
    return tuple(RemoteFile(center_file(c), "", None) for c in (range(n) if centers is None else centers))


SOURCE = DatasetSource(
    name="fed_synthetic",
    title="Fed-Synthetic",
    files=(RemoteFile(PARAMETERS_FILE, "", None),),
    listed=_listed,
    license="generated data (no license needed); the generator follows FLamby's (MIT)",
    citation="FLamby: Ogier du Terrail et al., NeurIPS 2022 (fed_synthetic)",
    command="flamby-flare generate",
)


@lru_cache(maxsize=8)
def _read(path: str, mtime_ns: int) -> dict:
    return {**DEFAULTS, **json.loads(Path(path).read_text())["parameters"]}


def parameters(folder: str | Path | None = None) -> dict:
    """The generator's parameters of the dataset in ``folder`` (default: the data root's), or ``DEFAULTS``."""
    from flamby_flare.paths import dataset_dir

    path = Path(folder or dataset_dir(SOURCE.name)) / PARAMETERS_FILE
    try:
        return _read(str(path), path.stat().st_mtime_ns)
    except (OSError, ValueError, KeyError):
        return dict(DEFAULTS)


def get_nb_max_rounds(num_updates: int, batch_size: int = BATCH_SIZE) -> int:
    """FLamby's: rounds of ``num_updates`` that match NUM_EPOCHS_POOLED epochs of an average center, from
    the generated number of samples and centers (at least 1)."""
    p = parameters()
    return max(1, nb_max_rounds(int(p["n_samples"]), int(p["n_centers"]), batch_size, NUM_EPOCHS_POOLED, num_updates))


def __getattr__(name: str):
    if name == "NUM_CLIENTS":
        return int(parameters()["n_centers"])
    if name == "CENTER_NAMES":
        return tuple(f"center {c}" for c in range(int(parameters()["n_centers"])))
    if name == "Optimizer":
        import torch

        return torch.optim.Adam
    raise AttributeError(name)

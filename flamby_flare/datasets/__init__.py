"""FLamby's datasets, each a package with FLamby's public API.

Every dataset exposes ``FedClass`` (also under its FLamby name, e.g. ``FedHeartDisease``),
``NUM_CLIENTS, BATCH_SIZE, LR, NUM_EPOCHS_POOLED, Optimizer, get_nb_max_rounds, Baseline,
BaselineLoss, metric`` as FLamby does, plus ``SOURCE`` (its raw files), ``METRIC_NAME`` and
``CENTER_NAMES``; the image datasets also ``preprocess(folder)``, which builds their cache once
(``flamby-flare preprocess NAME``). FLamby's constants alone are in ``<name>.common`` (no heavy imports).

Every ``FedClass`` takes FLamby's keywords ``center``, ``train``, ``pooled``, ``debug`` and ``data_path`` (the
folder holding the dataset's files; None: ``<data root>/<name>``). ``debug`` is there for FLamby code: FLamby
reads a partial "debug" download with it; every download here is whole, so it changes nothing.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from flamby_flare.errors import UnknownDatasetError

DATASETS: tuple[str, ...] = (
    "fed_camelyon16",
    "fed_lidc_idri",
    "fed_ixi",
    "fed_tcga_brca",
    "fed_kits19",
    "fed_isic2019",
    "fed_heart_disease",
    "fed_synthetic",
)


def _check_known(name: str) -> None:
    if name not in DATASETS:
        raise UnknownDatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")


def get_dataset(name: str) -> ModuleType:
    """The dataset package for ``name`` (e.g. ``"fed_heart_disease"``)."""
    _check_known(name)
    return importlib.import_module(f"flamby_flare.datasets.{name}")


def get_constants(name: str) -> ModuleType:
    """FLamby's constants for ``name`` (NUM_CLIENTS, BATCH_SIZE, LR, get_nb_max_rounds, ...), implemented or not."""
    _check_known(name)
    return importlib.import_module(f"flamby_flare.datasets.{name}.common")

"""FLamby's datasets, each a module with FLamby's public API.

Every dataset module exposes ``FedClass`` (also under its FLamby name, e.g. ``FedHeartDisease``),
``NUM_CLIENTS, BATCH_SIZE, LR, NUM_EPOCHS_POOLED, Optimizer, get_nb_max_rounds, Baseline,
BaselineLoss, metric`` as FLamby does, plus ``SOURCE`` (its raw files), ``METRIC_NAME`` and
``CENTER_NAMES``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from flamby_flare.errors import UnknownDatasetError

DATASETS: tuple[str, ...] = ("fed_heart_disease", "fed_tcga_brca")


def get_dataset(name: str) -> ModuleType:
    """The dataset module for ``name`` (e.g. ``"fed_heart_disease"``)."""
    if name not in DATASETS:
        raise UnknownDatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    return importlib.import_module(f"flamby_flare.datasets.{name}")

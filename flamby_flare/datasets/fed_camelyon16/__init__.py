"""Fed-Camelyon16 (FLamby §1.1): slide-level tumor detection from tile features across 2 hospitals."""

from flamby_flare.datasets.fed_camelyon16.common import (
    BATCH_SIZE,
    CENTER_NAMES,
    LR,
    METRIC_NAME,
    NUM_CLIENTS,
    NUM_EPOCHS_POOLED,
    SOURCE,
    get_nb_max_rounds,
)
from flamby_flare.datasets.lazy import lazy_exports

lazy_exports(
    __name__,
    {
        "FedCamelyon16": "dataset",
        "BaselineLoss": "loss",
        "metric": "metric",
        "Baseline": "model",
        "preprocess": "preprocess",
        "FedClass": "dataset.FedCamelyon16",
        "Optimizer": "common",
    },
    requires=("tiffslide",),
    site_imports=("pandas", "sklearn.metrics"),
)  # loaded when first used

__all__ = [
    "BATCH_SIZE",
    "CENTER_NAMES",
    "LR",
    "METRIC_NAME",
    "NUM_CLIENTS",
    "NUM_EPOCHS_POOLED",
    "SOURCE",
    "Optimizer",
    "get_nb_max_rounds",
    "FedCamelyon16",
    "FedClass",
    "metric",
    "Baseline",
    "BaselineLoss",
    "preprocess",
]

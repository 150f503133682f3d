"""Fed-Heart-Disease (FLamby §1.7): binary classification of heart disease across 4 hospitals."""

from flamby_flare.datasets.fed_heart_disease.common import (
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
        "FEATURE_NAMES": "dataset",
        "FedHeartDisease": "dataset",
        "metric": "metric",
        "Baseline": "model",
        "BaselineLoss": "model",
        "FedClass": "dataset.FedHeartDisease",
        "Optimizer": "common",
    },
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
    "FEATURE_NAMES",
    "FedHeartDisease",
    "FedClass",
    "metric",
    "Baseline",
    "BaselineLoss",
]

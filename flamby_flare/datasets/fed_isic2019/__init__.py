"""Fed-ISIC2019 (FLamby §1.6): 8-class dermoscopy classification across 6 centers."""

from flamby_flare.datasets.fed_isic2019.common import (
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
        "FedIsic2019": "dataset",
        "BaselineLoss": "loss",
        "metric": "metric",
        "Baseline": "model",
        "preprocess": "preprocess",
        "FedClass": "dataset.FedIsic2019",
        "Optimizer": "common",
    },
    requires=("efficientnet_pytorch",),
    site_imports=("efficientnet_pytorch", "sklearn.metrics"),
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
    "FedIsic2019",
    "FedClass",
    "metric",
    "Baseline",
    "BaselineLoss",
    "preprocess",
]

"""Fed-IXI (FLamby §1.3): T1 brain-mask segmentation on IXI-Tiny across 3 hospitals (Guys, HH, IOP)."""

from flamby_flare.datasets.fed_ixi.common import (
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
        "FedIXITiny": "dataset",
        "BaselineLoss": "loss",
        "metric": "metric",
        "Baseline": "model",
        "preprocess": "preprocess",
        "FedClass": "dataset.FedIXITiny",
        "Optimizer": "common",
    },
    requires=("monai", "nibabel"),
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
    "FedIXITiny",
    "FedClass",
    "metric",
    "Baseline",
    "BaselineLoss",
    "preprocess",
]

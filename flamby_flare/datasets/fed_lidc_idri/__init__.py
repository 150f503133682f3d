"""Fed-LIDC-IDRI (FLamby §1.2): lung-nodule segmentation in CT across 4 scanner manufacturers."""

from flamby_flare.datasets.fed_lidc_idri.common import (
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

METRIC_PER_ITEM = True  # the metric is per scan (all its patches), averaged over scans

lazy_exports(
    __name__,
    {
        "FedLidcIdri": "dataset",
        "BaselineLoss": "loss",
        "metric": "metric",
        "Baseline": "model",
        "preprocess": "preprocess",
        "FedClass": "dataset.FedLidcIdri",
        "Optimizer": "common",
    },
    requires=("monai", "nibabel", "pydicom"),
    site_imports=("monai.networks.nets", "nibabel"),
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
    "FedLidcIdri",
    "FedClass",
    "metric",
    "Baseline",
    "BaselineLoss",
    "preprocess",
    "METRIC_PER_ITEM",
]

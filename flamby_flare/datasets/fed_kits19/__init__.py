"""Fed-KITS19 (FLamby §1.5): kidney and tumor segmentation in CT across 6 silos of KiTS19."""

from flamby_flare.datasets.fed_kits19.common import (
    BATCH_SIZE,
    CENTER_NAMES,
    LR,
    METRIC_NAME,
    NUM_CLIENTS,
    NUM_EPOCHS_POOLED,
    PATCH_SIZE,
    SOURCE,
    get_nb_max_rounds,
)
from flamby_flare.datasets.lazy import lazy_exports

lazy_exports(
    __name__,
    {
        "FedKits19": "dataset",
        "BaselineLoss": "loss",
        "metric": "metric",
        "Baseline": "model",
        "preprocess": "preprocess",
        "FedClass": "dataset.FedKits19",
        "Optimizer": "common",
    },
    requires=("monai", "nibabel"),
    site_imports=("monai.networks.nets", "monai.losses", "monai.transforms"),
)  # loaded when first used

__all__ = [
    "BATCH_SIZE",
    "CENTER_NAMES",
    "LR",
    "METRIC_NAME",
    "NUM_CLIENTS",
    "NUM_EPOCHS_POOLED",
    "PATCH_SIZE",
    "SOURCE",
    "Optimizer",
    "get_nb_max_rounds",
    "FedKits19",
    "FedClass",
    "metric",
    "Baseline",
    "BaselineLoss",
    "preprocess",
]

"""Fed-TCGA-BRCA (FLamby §1.4): breast-cancer survival (Cox model, C-index) across 6 regions."""

from flamby_flare.datasets.fed_tcga_brca.common import (
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
        "FedTcgaBrca": "dataset",
        "metric": "metric",
        "Baseline": "model",
        "BaselineLoss": "model",
        "FedClass": "dataset.FedTcgaBrca",
        "Optimizer": "common",
    },
    site_imports=("pandas", "lifelines.utils"),
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
    "FedTcgaBrca",
    "FedClass",
    "metric",
    "Baseline",
    "BaselineLoss",
]

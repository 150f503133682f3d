"""Fed-Synthetic (FLamby's ``fed_synthetic``): generated classification data with chosen numbers of centers,
samples and features and FLamby's heterogeneity knobs (sample repartition, noise, feature and label
heterogeneity); ``flamby-flare generate`` makes it."""

from flamby_flare.datasets.fed_synthetic.common import (
    BATCH_SIZE,
    DEFAULTS,
    LR,
    METRIC_NAME,
    NUM_EPOCHS_POOLED,
    SOURCE,
    get_nb_max_rounds,
    parameters,
)
from flamby_flare.datasets.lazy import lazy_exports

lazy_exports(
    __name__,
    {
        "FedSynthetic": "dataset",
        "FedClass": "dataset.FedSynthetic",
        "BaselineLoss": "model",
        "Baseline": "model",
        "metric": "metric",
        "generate": "generator",
        "generate_synthetic_dataset": "generator",
        "Optimizer": "common",
        "NUM_CLIENTS": "common",
        "CENTER_NAMES": "common",
    },
    dynamic=("NUM_CLIENTS", "CENTER_NAMES"),
    site_imports=("sklearn.model_selection", "sklearn.metrics"),
)  # loaded when first used; those two: of the dataset generated now

__all__ = [
    "BATCH_SIZE",
    "CENTER_NAMES",
    "DEFAULTS",
    "LR",
    "METRIC_NAME",
    "NUM_CLIENTS",
    "NUM_EPOCHS_POOLED",
    "SOURCE",
    "Optimizer",
    "get_nb_max_rounds",
    "parameters",
    "FedSynthetic",
    "FedClass",
    "metric",
    "Baseline",
    "BaselineLoss",
    "generate",
    "generate_synthetic_dataset",
]

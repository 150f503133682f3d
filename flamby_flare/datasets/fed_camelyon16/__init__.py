"""Fed-Camelyon16 (FLamby §1.1): slide-level tumor detection from tile features across 2 hospitals."""

from flamby_flare.datasets.fed_camelyon16.common import (
    BATCH_SIZE, CENTER_NAMES, LR, METRIC_NAME, NUM_CLIENTS, NUM_EPOCHS_POOLED, SOURCE, Optimizer,
    get_nb_max_rounds,
)
from flamby_flare.datasets.fed_camelyon16.dataset import FedCamelyon16
from flamby_flare.datasets.fed_camelyon16.loss import BaselineLoss
from flamby_flare.datasets.fed_camelyon16.metric import metric
from flamby_flare.datasets.fed_camelyon16.model import Baseline
from flamby_flare.datasets.fed_camelyon16.preprocess import preprocess

FedClass = FedCamelyon16

__all__ = [
    "BATCH_SIZE", "CENTER_NAMES", "LR", "METRIC_NAME", "NUM_CLIENTS", "NUM_EPOCHS_POOLED", "SOURCE",
    "Optimizer", "get_nb_max_rounds", "FedCamelyon16", "FedClass", "metric", "Baseline", "BaselineLoss", "preprocess",
]

"""Fed-KITS19 (FLamby §1.5): kidney and tumor segmentation in CT across 6 silos of KiTS19."""

from flamby_flare.datasets.fed_kits19.common import (
    BATCH_SIZE, CENTER_NAMES, LR, METRIC_NAME, NUM_CLIENTS, NUM_EPOCHS_POOLED, PATCH_SIZE, SOURCE, Optimizer,
    get_nb_max_rounds,
)
from flamby_flare.datasets.fed_kits19.dataset import FedKits19
from flamby_flare.datasets.fed_kits19.loss import BaselineLoss
from flamby_flare.datasets.fed_kits19.metric import metric
from flamby_flare.datasets.fed_kits19.model import Baseline
from flamby_flare.datasets.fed_kits19.preprocess import preprocess

FedClass = FedKits19

__all__ = [
    "BATCH_SIZE", "CENTER_NAMES", "LR", "METRIC_NAME", "NUM_CLIENTS", "NUM_EPOCHS_POOLED", "PATCH_SIZE", "SOURCE",
    "Optimizer", "get_nb_max_rounds", "FedKits19", "FedClass", "metric", "Baseline", "BaselineLoss", "preprocess",
]

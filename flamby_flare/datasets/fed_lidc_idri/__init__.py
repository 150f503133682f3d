"""Fed-LIDC-IDRI (FLamby §1.2): lung-nodule segmentation in CT across 4 scanner manufacturers."""

from flamby_flare.datasets.fed_lidc_idri.common import (
    BATCH_SIZE, CENTER_NAMES, LR, METRIC_NAME, NUM_CLIENTS, NUM_EPOCHS_POOLED, SOURCE, Optimizer,
    get_nb_max_rounds,
)
from flamby_flare.datasets.fed_lidc_idri.dataset import FedLidcIdri
from flamby_flare.datasets.fed_lidc_idri.loss import BaselineLoss
from flamby_flare.datasets.fed_lidc_idri.metric import metric
from flamby_flare.datasets.fed_lidc_idri.model import Baseline
from flamby_flare.datasets.fed_lidc_idri.preprocess import preprocess

FedClass = FedLidcIdri
METRIC_PER_ITEM = True  # the metric is per scan (all its patches), averaged over scans

__all__ = [
    "BATCH_SIZE", "CENTER_NAMES", "LR", "METRIC_NAME", "NUM_CLIENTS", "NUM_EPOCHS_POOLED", "SOURCE",
    "Optimizer", "get_nb_max_rounds", "FedLidcIdri", "FedClass", "metric", "Baseline", "BaselineLoss",
    "preprocess", "METRIC_PER_ITEM",
]

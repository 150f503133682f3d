"""Fed-ISIC2019 (FLamby §1.6): 8-class dermoscopy classification across 6 centers."""

from flamby_flare.datasets.fed_isic2019.common import (
    BATCH_SIZE, CENTER_NAMES, LR, METRIC_NAME, NUM_CLIENTS, NUM_EPOCHS_POOLED, SOURCE, Optimizer,
    get_nb_max_rounds,
)
from flamby_flare.datasets.fed_isic2019.dataset import FedIsic2019
from flamby_flare.datasets.fed_isic2019.loss import BaselineLoss
from flamby_flare.datasets.fed_isic2019.metric import metric
from flamby_flare.datasets.fed_isic2019.model import Baseline
from flamby_flare.datasets.fed_isic2019.preprocess import preprocess

FedClass = FedIsic2019

__all__ = [
    "BATCH_SIZE", "CENTER_NAMES", "LR", "METRIC_NAME", "NUM_CLIENTS", "NUM_EPOCHS_POOLED", "SOURCE",
    "Optimizer", "get_nb_max_rounds", "FedIsic2019", "FedClass", "metric", "Baseline", "BaselineLoss", "preprocess",
]

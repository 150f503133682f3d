"""Fed-Heart-Disease (FLamby §1.7): binary classification of heart disease across 4 hospitals."""

from flamby_flare.datasets.fed_heart_disease.common import (
    BATCH_SIZE, CENTER_NAMES, LR, METRIC_NAME, NUM_CLIENTS, NUM_EPOCHS_POOLED, SOURCE, Optimizer,
    get_nb_max_rounds,
)
from flamby_flare.datasets.fed_heart_disease.dataset import FEATURE_NAMES, FedHeartDisease
from flamby_flare.datasets.fed_heart_disease.metric import metric
from flamby_flare.datasets.fed_heart_disease.model import Baseline, BaselineLoss

FedClass = FedHeartDisease

__all__ = [
    "BATCH_SIZE", "CENTER_NAMES", "LR", "METRIC_NAME", "NUM_CLIENTS", "NUM_EPOCHS_POOLED", "SOURCE",
    "Optimizer", "get_nb_max_rounds", "FEATURE_NAMES", "FedHeartDisease", "FedClass", "metric",
    "Baseline", "BaselineLoss",
]

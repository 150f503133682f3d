"""Fed-IXI (FLamby §1.3): T1 brain-mask segmentation on IXI-Tiny across 3 hospitals (Guys, HH, IOP)."""

from flamby_flare.datasets.fed_ixi.common import (
    BATCH_SIZE, CENTER_NAMES, LR, METRIC_NAME, NUM_CLIENTS, NUM_EPOCHS_POOLED, SOURCE, Optimizer,
    get_nb_max_rounds,
)
from flamby_flare.datasets.fed_ixi.dataset import FedIXITiny
from flamby_flare.datasets.fed_ixi.loss import BaselineLoss
from flamby_flare.datasets.fed_ixi.metric import metric
from flamby_flare.datasets.fed_ixi.model import Baseline
from flamby_flare.datasets.fed_ixi.preprocess import preprocess

FedClass = FedIXITiny

__all__ = [
    "BATCH_SIZE", "CENTER_NAMES", "LR", "METRIC_NAME", "NUM_CLIENTS", "NUM_EPOCHS_POOLED", "SOURCE",
    "Optimizer", "get_nb_max_rounds", "FedIXITiny", "FedClass", "metric", "Baseline", "BaselineLoss",
    "preprocess",
]

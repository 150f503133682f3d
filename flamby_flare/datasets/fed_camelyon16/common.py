"""Fed-Camelyon16 constants, as FLamby defines them (reference §0)."""

import torch

from flamby_flare.datasets.rounds import nb_max_rounds

NUM_CLIENTS = 2
BATCH_SIZE = 16
NUM_EPOCHS_POOLED = 45
LR = 1e-3
Optimizer = torch.optim.Adam
METRIC_NAME = "auc"
CENTER_NAMES = ("RUMC", "UMCU")
_POOLED_TRAIN_SIZE = 270  # FLamby's constant N


def get_nb_max_rounds(num_updates: int, batch_size: int = BATCH_SIZE) -> int:
    return nb_max_rounds(_POOLED_TRAIN_SIZE, NUM_CLIENTS, batch_size, NUM_EPOCHS_POOLED, num_updates)

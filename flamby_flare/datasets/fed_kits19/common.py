"""Fed-KITS19 constants, as FLamby defines them (reference §0)."""

import torch

from flamby_flare.datasets.rounds import nb_max_rounds

NUM_CLIENTS = 6
BATCH_SIZE = 2
NUM_EPOCHS_POOLED = 500
LR = 3e-4
Optimizer = torch.optim.Adam
METRIC_NAME = "dice"
CENTER_NAMES = ("site_7", "site_13", "site_14", "site_55", "site_57", "site_67")
_POOLED_TRAIN_SIZE = 72  # FLamby's constant N


def get_nb_max_rounds(num_updates: int, batch_size: int = BATCH_SIZE) -> int:
    return nb_max_rounds(_POOLED_TRAIN_SIZE, NUM_CLIENTS, batch_size, NUM_EPOCHS_POOLED, num_updates)

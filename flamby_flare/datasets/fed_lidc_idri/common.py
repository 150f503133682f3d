"""Fed-LIDC-IDRI constants, as FLamby defines them (reference §0)."""

import torch

from flamby_flare.datasets.rounds import nb_max_rounds

NUM_CLIENTS = 4
BATCH_SIZE = 1
NUM_EPOCHS_POOLED = 100
LR = 1e-2
Optimizer = torch.optim.Adam
METRIC_NAME = "dice"
CENTER_NAMES = ("GE", "Philips", "Siemens", "Toshiba")
_POOLED_TRAIN_SIZE = 805  # FLamby's constant N


def get_nb_max_rounds(num_updates: int, batch_size: int = BATCH_SIZE) -> int:
    return nb_max_rounds(_POOLED_TRAIN_SIZE, NUM_CLIENTS, batch_size, NUM_EPOCHS_POOLED, num_updates)

"""Fed-IXI constants, as FLamby defines them (reference §0)."""

import torch

from flamby_flare.datasets.rounds import nb_max_rounds

NUM_CLIENTS = 3
BATCH_SIZE = 2
NUM_EPOCHS_POOLED = 10
LR = 1e-3
Optimizer = torch.optim.AdamW
METRIC_NAME = "dice"
CENTER_NAMES = ("Guys", "HH", "IOP")
_POOLED_TRAIN_SIZE = 450  # FLamby's constant N


def get_nb_max_rounds(num_updates: int, batch_size: int = BATCH_SIZE) -> int:
    return nb_max_rounds(_POOLED_TRAIN_SIZE, NUM_CLIENTS, batch_size, NUM_EPOCHS_POOLED, num_updates)

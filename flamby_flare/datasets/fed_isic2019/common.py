"""Fed-ISIC2019 constants, as FLamby defines them (reference §0)."""

import torch

from flamby_flare.datasets.rounds import nb_max_rounds

NUM_CLIENTS = 6
BATCH_SIZE = 64
NUM_EPOCHS_POOLED = 20
LR = 5e-4
Optimizer = torch.optim.Adam
METRIC_NAME = "balanced_accuracy"
CENTER_NAMES = ("BCN", "HAM_vidir_molemax", "HAM_vidir_modern", "HAM_rosendahl", "MSK", "HAM_vienna_dias")
_POOLED_TRAIN_SIZE = 18413  # FLamby's constant N


def get_nb_max_rounds(num_updates: int, batch_size: int = BATCH_SIZE) -> int:
    return nb_max_rounds(_POOLED_TRAIN_SIZE, NUM_CLIENTS, batch_size, NUM_EPOCHS_POOLED, num_updates)

"""Fed-Camelyon16 constants, as FLamby defines them (reference §0)."""

import torch

from flamby_flare.datasets.rounds import round_budget

NUM_CLIENTS = 2
BATCH_SIZE = 16
NUM_EPOCHS_POOLED = 45
LR = 1e-3
Optimizer = torch.optim.Adam
METRIC_NAME = "auc"
CENTER_NAMES = ("RUMC", "UMCU")

# 270 is FLamby's hard-coded pooled train size N of the formula
get_nb_max_rounds = round_budget(270, NUM_CLIENTS, BATCH_SIZE, NUM_EPOCHS_POOLED)

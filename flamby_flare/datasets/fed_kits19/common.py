"""Fed-KITS19 constants, as FLamby defines them (reference §0)."""

import torch

from flamby_flare.datasets.rounds import round_budget

NUM_CLIENTS = 6
BATCH_SIZE = 2
NUM_EPOCHS_POOLED = 500
LR = 3e-4
Optimizer = torch.optim.Adam
METRIC_NAME = "dice"
CENTER_NAMES = ("site_7", "site_13", "site_14", "site_55", "site_57", "site_67")

# 72 is FLamby's hard-coded pooled train size N of the formula
get_nb_max_rounds = round_budget(72, NUM_CLIENTS, BATCH_SIZE, NUM_EPOCHS_POOLED)

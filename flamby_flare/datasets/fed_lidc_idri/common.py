"""Fed-LIDC-IDRI constants, as FLamby defines them (reference §0)."""

import torch

from flamby_flare.datasets.rounds import round_budget

NUM_CLIENTS = 4
BATCH_SIZE = 1
NUM_EPOCHS_POOLED = 100
LR = 1e-2
Optimizer = torch.optim.Adam
METRIC_NAME = "dice"
CENTER_NAMES = ("GE", "Philips", "Siemens", "Toshiba")

# 805 is FLamby's hard-coded pooled train size N of the formula
get_nb_max_rounds = round_budget(805, NUM_CLIENTS, BATCH_SIZE, NUM_EPOCHS_POOLED)

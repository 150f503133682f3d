"""Fed-IXI constants, as FLamby defines them (reference §0)."""

import torch

from flamby_flare.datasets.rounds import round_budget

NUM_CLIENTS = 3
BATCH_SIZE = 2
NUM_EPOCHS_POOLED = 10
LR = 1e-3
Optimizer = torch.optim.AdamW
METRIC_NAME = "dice"
CENTER_NAMES = ("Guys", "HH", "IOP")

# 450 is FLamby's hard-coded pooled train size N of the formula
get_nb_max_rounds = round_budget(450, NUM_CLIENTS, BATCH_SIZE, NUM_EPOCHS_POOLED)

"""Fed-ISIC2019 constants, as FLamby defines them (reference §0)."""

import torch

from flamby_flare.datasets.rounds import round_budget

NUM_CLIENTS = 6
BATCH_SIZE = 64
NUM_EPOCHS_POOLED = 20
LR = 5e-4
Optimizer = torch.optim.Adam
METRIC_NAME = "balanced_accuracy"
CENTER_NAMES = ("BCN", "HAM_vidir_molemax", "HAM_vidir_modern", "HAM_rosendahl", "MSK", "HAM_vienna_dias")

# 18413 is FLamby's hard-coded pooled train size N of the formula
get_nb_max_rounds = round_budget(18413, NUM_CLIENTS, BATCH_SIZE, NUM_EPOCHS_POOLED)

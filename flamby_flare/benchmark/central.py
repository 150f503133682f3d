"""FLamby's non-federated baselines: Pooled Training and Local i (reference §0, §3).

Exactly FLamby's loop: from the seed's shared initial model, ``set_seed(seed)``, then the dataset's
``Optimizer(params, lr=LR)`` (Adam; AdamW for IXI) for NUM_EPOCHS_POOLED epochs of a
``DataLoader(batch_size=BATCH_SIZE, shuffle=True)`` over the pooled (or one center's) train set, no
scheduler. The shuffling draws from torch's global RNG as FLamby's does, which reproduces FLamby's
published baselines seed for seed; ``seeding.GLOBAL_RNG`` keeps concurrent cells, evaluations and model
builds from drawing from that RNG mid-training.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import ModuleType

from torch.utils.data import DataLoader

from flamby_flare.model_state import NumpyState, load_numpy_state, to_numpy_state
from flamby_flare.seeding import GLOBAL_RNG, set_seed

POOLED = -1  # the "center" of the pooled baseline


class Diverged(Exception):
    """Training loss became NaN or infinite."""

    def __init__(self, epoch: int):
        super().__init__(f"loss became non-finite in epoch {epoch}")
        self.epoch = epoch


def train_central(module: ModuleType, data_dir: Path, init: NumpyState, seed: int, center: int = POOLED,
                  device: str = "cpu") -> NumpyState:
    """Pooled (``center=POOLED``) or Local ``center`` training; raises ``Diverged`` on a non-finite loss."""
    pooled = center == POOLED
    train_set = module.FedClass(center=max(center, 0), train=True, pooled=pooled, data_path=data_dir)
    loss_fn = module.BaselineLoss()
    with GLOBAL_RNG:
        model = module.Baseline().to(device)
        load_numpy_state(model, init)
        model.train()
        set_seed(seed)
        optimizer = module.Optimizer(model.parameters(), lr=module.LR)
        loader = DataLoader(train_set, batch_size=module.BATCH_SIZE, shuffle=True)
        for epoch in range(module.NUM_EPOCHS_POOLED):
            total = 0.0
            for X, y in loader:
                X, y = X.to(device), y.to(device)
                optimizer.zero_grad()
                loss = loss_fn(model(X), y)
                loss.backward()
                optimizer.step()
                total += float(loss.detach())
            if not math.isfinite(total):
                raise Diverged(epoch + 1)
    return to_numpy_state(model)

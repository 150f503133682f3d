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
import threading
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from flamby_flare.local_training import Adam
from flamby_flare.model_state import NumpyState, load_numpy_state, to_numpy_state
from flamby_flare.seeding import GLOBAL_RNG, set_seed

if TYPE_CHECKING:
    from flamby_flare.datasets.tensor_dataset import TensorFedDataset

POOLED = -1  # the "center" of the pooled baseline


class Diverged(Exception):
    """Training loss became NaN or infinite."""

    def __init__(self, epoch: int):
        super().__init__(f"loss became non-finite in epoch {epoch}")
        self.epoch = epoch


def train_central(
    module: ModuleType,
    data_dir: Path,
    init: NumpyState,
    seed: int,
    center: int = POOLED,
    device: str = "cpu",
    stop: threading.Event | None = None,
) -> NumpyState:
    """Pooled (``center=POOLED``) or Local ``center`` training; raises ``Diverged`` on a non-finite loss, and
    ``KeyboardInterrupt`` at the batch after ``stop`` is set."""
    from torch.utils.data import DataLoader

    pooled = center == POOLED
    train_set = module.FedClass(center=max(center, 0), train=True, pooled=pooled, data_path=data_dir)
    loss_fn = module.BaselineLoss()
    with GLOBAL_RNG:
        model = module.Baseline().to(device)
        load_numpy_state(model, init)
        model.train()
        set_seed(seed)
        fast = _tensor_batches(train_set, module.BATCH_SIZE, module.Optimizer)
        optimizer = (Adam if fast else module.Optimizer)(model.parameters(), lr=module.LR)
        loader = fast or DataLoader(train_set, batch_size=module.BATCH_SIZE, shuffle=True)
        for epoch in range(module.NUM_EPOCHS_POOLED):
            total = 0.0
            for X, y in loader:
                if stop is not None and stop.is_set():
                    raise KeyboardInterrupt
                X, y = X.to(device), y.to(device)
                optimizer.zero_grad()
                loss = loss_fn(model(X), y)
                loss.backward()
                optimizer.step()
                total += float(loss.detach())
            if not math.isfinite(total):
                raise Diverged(epoch + 1)
    return to_numpy_state(model)


class _ShuffledTensorBatches:
    """``DataLoader(dataset, batch_size, shuffle=True)`` over a ``TensorFedDataset``, batch for batch and draw for
    draw from torch's global generator (each epoch, its iterator's base seed, then its ``RandomSampler``'s seed for
    the epoch's permutation), the rows of a batch indexed at once instead of fetched one by one and collated."""

    def __init__(self, dataset: "TensorFedDataset", batch_size: int):
        self.dataset, self.batch_size = dataset, batch_size

    def __iter__(self):
        import torch

        torch.empty((), dtype=torch.int64).random_()  # the iterator's base seed (for loader workers: none here)
        seed = int(torch.empty((), dtype=torch.int64).random_().item())
        order = torch.randperm(len(self.dataset), generator=torch.Generator().manual_seed(seed))
        for indices in order.split(self.batch_size):
            yield self.dataset.get_batch(indices)


def _tensor_batches(dataset, batch_size: int, optimizer: type) -> _ShuffledTensorBatches | None:
    """FLamby's loop without a DataLoader or a torch optimizer, the same numbers bit for bit, where that is known
    to hold: a tensor dataset without augmentation, trained with Adam (``local_training.Adam``); else None."""
    import torch

    from flamby_flare.datasets.tensor_dataset import TensorFedDataset, uses_batch_seed

    if isinstance(dataset, TensorFedDataset) and not uses_batch_seed(dataset) and optimizer is torch.optim.Adam:
        return _ShuffledTensorBatches(dataset, batch_size)
    return None

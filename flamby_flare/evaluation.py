"""A model's metric on test sets, as FLamby's ``evaluate_model_on_tests`` computes it: eval mode, no
gradients, the dataset's metric on the concatenation of all predictions of a test set (NaN when the
metric cannot be computed, e.g. on NaN predictions)."""

from __future__ import annotations

import os
from types import ModuleType

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from flamby_flare.datasets.tensor_dataset import fetch_batch
from flamby_flare.model_state import NumpyState, load_numpy_state
from flamby_flare.seeding import GLOBAL_RNG

POOLED_TEST = "Pooled Test"
ITEM_CHUNK = 8  # patches per forward pass when a metric is per item (FLamby: a scan's 27 patches in 4 chunks)


def flamby_test_sets(module: ModuleType, data_path: str | os.PathLike) -> dict[str, Dataset]:
    """FLamby's test sets: ``client_test_<i>`` for every center, then ``Pooled Test``."""
    sets = {
        f"client_test_{c}": module.FedClass(center=c, train=False, data_path=data_path)
        for c in range(module.NUM_CLIENTS)
    }
    sets[POOLED_TEST] = module.FedClass(train=False, pooled=True, data_path=data_path)
    return sets


@torch.no_grad()
def predict(
    model: nn.Module, dataset: Dataset, batch_size: int, device: torch.device | str = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """``(y_true, y_pred)`` over ``dataset``, concatenated in dataset order."""
    model.eval()
    y_true, y_pred = [], []
    for start in range(0, len(dataset), batch_size):
        X, y = fetch_batch(dataset, torch.arange(start, min(start + batch_size, len(dataset))))
        y_pred.append(model(X.to(device)).float().cpu())  # float: a bf16 (autocast) output has no NumPy type
        y_true.append(y)
    return torch.cat(y_true).numpy(), torch.cat(y_pred).numpy()


@torch.no_grad()
def item_scores(
    module: ModuleType, model: nn.Module, dataset: Dataset, device: torch.device | str = "cpu"
) -> list[float]:
    """The metric of each dataset item on its own (an item is one scan's patches), forward passes in chunks of
    ``ITEM_CHUNK`` patches (FLamby's chunked evaluation): the test set is never held in memory at once."""
    model.eval()
    scores = []
    for i in range(len(dataset)):
        X, y = fetch_batch(dataset, torch.tensor([i]))
        pred = torch.cat([model(X[s : s + ITEM_CHUNK].to(device)).float().cpu() for s in range(0, len(X), ITEM_CHUNK)])
        scores.append(float(module.metric(y.numpy(), pred.numpy())))
    return scores


def evaluate(
    module: ModuleType,
    model: nn.Module,
    dataset: Dataset,
    batch_size: int | None = None,
    device: torch.device | str = "cpu",
) -> float:
    """FLamby's metric on ``dataset``: on the concatenated predictions, or the mean over items for datasets
    whose metric is per item (``METRIC_PER_ITEM``: Fed-LIDC-IDRI's per scan)."""
    try:
        if getattr(module, "METRIC_PER_ITEM", False):
            return float(np.mean(item_scores(module, model, dataset, device)))
        return float(module.metric(*predict(model, dataset, batch_size or module.BATCH_SIZE, device)))
    except ValueError:  # FLamby records NaN
        return float("nan")


def evaluate_state(
    module: ModuleType, params: NumpyState, datasets: dict[str, Dataset], device: str = "cpu"
) -> dict[str, float]:
    """The metric of the model state ``params`` on each of ``datasets``."""
    with GLOBAL_RNG:  # building it draws from torch's global RNG, which a concurrent seeded cell may be using
        model = module.Baseline().to(device)
    load_numpy_state(model, params)
    return {name: evaluate(module, model, ds, device=device) for name, ds in datasets.items()}

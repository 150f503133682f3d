"""A site's local training and evaluation, in plain PyTorch (no NVFlare), so tests drive it directly."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import torch

from executors.batch_stream import BatchStream, fetch_batch
from flamby_flare.datasets import get_dataset
from flamby_flare.model_state import NumpyState, load_numpy_state, to_numpy_state
from flamby_flare.paths import dataset_dir
from flamby_flare.protocol import TrainPlan
from flamby_flare.seeding import derive_seed, set_seed


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else CPU; otherwise any torch device string."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class TrainResult:
    params: NumpyState
    n_samples: int
    loss: float
    num_updates: int
    seconds: float


class SiteTrainer:
    """FLamby center ``center`` of ``dataset``: its train and test sets and its copy of the baseline.

    Training follows FLamby's client: plain SGD (no momentum, no weight decay) with the plan's lr for
    ``num_updates`` batch updates, the batches streaming on across rounds (see ``BatchStream``). All
    randomness of round r comes from ``(seed, center, r)``, so results do not depend on process lifetime.
    """

    def __init__(
        self,
        dataset: str,
        center: int,
        data_root: str | os.PathLike | None = None,
        device: str = "auto",
        eval_batch_size: int | None = None,
    ):
        self.dataset_name = dataset
        self.module = get_dataset(dataset)
        self.center = center
        folder = dataset_dir(dataset, data_root)
        self.train_set = self.module.FedClass(center=center, train=True, data_path=folder)
        self.test_set = self.module.FedClass(center=center, train=False, data_path=folder)
        self.device = resolve_device(device)
        self.model = self.module.Baseline().to(self.device)
        self.loss_fn = self.module.BaselineLoss()
        self.eval_batch_size = eval_batch_size or self.module.BATCH_SIZE

    @property
    def n_train(self) -> int:
        return len(self.train_set)

    @property
    def n_test(self) -> int:
        return len(self.test_set)

    def train(self, params: NumpyState, plan: TrainPlan, round_index: int) -> TrainResult:
        """One round of local training from ``params``; returns the new full model state."""
        if plan.dataset != self.dataset_name:
            raise ValueError(f"server plans {plan.dataset!r} but this site serves {self.dataset_name!r}")
        load_numpy_state(self.model, params)
        self.model.train()
        set_seed(derive_seed(plan.seed, self.center, round_index, 1))
        optimizer = torch.optim.SGD(self.model.parameters(), lr=plan.learning_rate)
        stream = BatchStream(self.n_train, plan.batch_size, derive_seed(plan.seed, self.center))
        start = time.perf_counter()
        total = torch.zeros((), device=self.device)
        for indices in stream.batches(start=round_index * plan.num_updates, count=plan.num_updates):
            X, y = (t.to(self.device) for t in fetch_batch(self.train_set, indices))
            loss = self.loss_fn(self.model(X), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.detach()
        mean_loss = float(total) / max(plan.num_updates, 1)
        return TrainResult(
            to_numpy_state(self.model), self.n_train, mean_loss, plan.num_updates, time.perf_counter() - start
        )

    @torch.no_grad()
    def predict(self, params: NumpyState) -> tuple[np.ndarray, np.ndarray]:
        """``(y_true, y_pred)`` over the local test set, concatenated in dataset order."""
        load_numpy_state(self.model, params)
        self.model.eval()
        y_true, y_pred = [], []
        for start in range(0, self.n_test, self.eval_batch_size):
            indices = torch.arange(start, min(start + self.eval_batch_size, self.n_test))
            X, y = fetch_batch(self.test_set, indices)
            y_pred.append(self.model(X.to(self.device)).cpu())
            y_true.append(y)
        return torch.cat(y_true).numpy(), torch.cat(y_pred).numpy()

    def evaluate(self, params: NumpyState) -> float:
        """The dataset's metric of ``params`` on this site's local test set (FLamby: on the concatenation)."""
        return float(self.module.metric(*self.predict(params)))

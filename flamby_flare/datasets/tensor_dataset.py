"""A map-style dataset held as two tensors, with vectorized batch access."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, default_collate


def check_center(center: int, pooled: bool, num_clients: int) -> None:
    if not pooled and center not in range(num_clients):
        raise ValueError(f"center must be in 0..{num_clients - 1}, got {center}")


class TensorFedDataset(Dataset):
    """Samples ``(X[i], y[i])``; ``get_batch`` indexes both tensors at once (no per-row Python work)."""

    X: torch.Tensor
    y: torch.Tensor
    uses_batch_seed = False  # get_batch draws nothing from its seed

    def __len__(self) -> int:
        return self.X.shape[0]

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.X[idx], self.y[idx]

    def get_batch(self, indices: torch.Tensor, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows ``indices`` (``seed``, for augmentation, is unused: tabular data has none)."""
        return self.X[indices], self.y[indices]


def batch_seed(seed: int | None) -> int:
    """A batch's augmentation seed: ``seed``, or one drawn from torch's global generator when None."""
    return seed if seed is not None else int(torch.randint(2**62, ()))


def uses_batch_seed(dataset: Dataset) -> bool:
    """Whether ``dataset``'s batches depend on their augmentation seed (a dataset that does not say: yes)."""
    return getattr(dataset, "uses_batch_seed", True)


def fetch_batch(dataset: Dataset, indices: torch.Tensor, seed: int | None = None):
    """One batch: the dataset's vectorized ``get_batch`` when it has one (``seed`` drives its augmentation),
    else per-item + collate."""
    if hasattr(dataset, "get_batch"):
        return dataset.get_batch(indices, seed=seed)
    return default_collate([dataset[int(i)] for i in indices])

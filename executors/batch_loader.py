"""A site's batches, loaded in the site's process or in DataLoader worker processes, moved to its device.

A batch is ``(indices, seed)``: the dataset's ``get_batch(indices, seed)`` draws all its augmentation from
``seed``, so a batch is the same whichever process builds it and however many workers there are. On CUDA,
workers load ahead of the model into pinned memory and the copies to the GPU are non-blocking.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from flamby_flare.datasets.tensor_dataset import fetch_batch

Batch = tuple[torch.Tensor, int]  # (sample indices, augmentation seed)


def auto_workers(dataset: Dataset, device: torch.device) -> int:
    """Loader processes when none are asked for: none on CPU (the model is the limit there) or for data that
    costs nothing to load; on a GPU, for datasets with per-sample CPU work (``heavy_loading``), up to 8 and
    at most half the cores (the sites of a simulator run share the machine)."""
    if device.type == "cpu" or not getattr(dataset, "heavy_loading", False):
        return 0
    return max(1, min(8, (os.cpu_count() or 2) // 2))


class _Batches(Dataset):
    def __init__(self, dataset: Dataset, batches: list[Batch]):
        self.dataset, self.batches = dataset, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int):
        indices, seed = self.batches[i]
        return fetch_batch(self.dataset, indices, seed)


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)


def load_batches(
    dataset: Dataset, batches: Iterable[Batch], device: torch.device, num_workers: int = 0
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(X, y)`` on ``device`` for each of ``batches``, in order."""
    if num_workers == 0:
        for indices, seed in batches:
            X, y = fetch_batch(dataset, indices, seed)
            yield X.to(device), y.to(device)
        return
    pin = device.type == "cuda"
    loader = DataLoader(
        _Batches(dataset, list(batches)),
        batch_size=None,
        num_workers=num_workers,
        pin_memory=pin,
        prefetch_factor=4,
        worker_init_fn=_one_thread,
        generator=torch.Generator(),  # its base seed is unused (each batch has its own); drawn from the global
        # generator, it would shift the model's dropout draws between num_workers 0 and N
    )
    for X, y in loader:
        yield X.to(device, non_blocking=pin), y.to(device, non_blocking=pin)

"""Model state on the wire: a dict of NumPy arrays, one per ``state_dict`` entry (torch is imported only by
the functions that need it, so the strategies' server rules and the job generator run without it).

NumPy needs no decomposer in NVFlare and keeps the exchanged values exact. Every entry travels,
floating-point (parameters, BatchNorm running statistics) and integer (e.g. ``num_batches_tracked``).
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from flamby_flare.seeding import GLOBAL_RNG, set_seed

if TYPE_CHECKING:
    from torch import nn

NumpyState = dict[str, np.ndarray]


def to_numpy_state(model: nn.Module) -> NumpyState:
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def load_numpy_state(model: nn.Module, state: NumpyState) -> None:
    """Load ``state`` into ``model`` (strict: a missing or unexpected key is an error)."""
    import torch

    model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}, strict=True)


def _is_float(value) -> bool:
    return np.issubdtype(np.asarray(value).dtype, np.floating)


def difference(y: NumpyState, x: NumpyState) -> NumpyState:
    """y - x per entry: float64 for floating-point entries (exact for float32 states), integer otherwise."""
    return {
        k: np.asarray(v, np.float64) - np.asarray(x[k], np.float64)
        if _is_float(v)
        else np.asarray(v) - np.asarray(x[k])
        for k, v in y.items()
    }


def add_update(x: NumpyState, update: NumpyState) -> NumpyState:
    """x + update per entry, in float64 and cast back to ``x``'s dtypes (the inverse of ``difference``)."""
    return {
        k: (np.asarray(v, np.float64) + np.asarray(update[k], np.float64)).astype(np.asarray(v).dtype)
        if _is_float(v)
        else np.asarray(v) + np.asarray(update[k])
        for k, v in x.items()
    }


def initial_model(module: ModuleType, seed: int, pretrained_weights: str | os.PathLike | None = None) -> nn.Module:
    """FLamby's shared initial model of a run (its benchmark's ``set_seed(seed); Baseline()``), starting from
    ``pretrained_weights`` (a local file, for the datasets whose baseline takes them: Fed-ISIC2019) when given."""
    if pretrained_weights is not None:
        if "pretrained_weights" not in inspect.signature(module.Baseline).parameters:
            raise ValueError(f"{module.SOURCE.title}'s baseline takes no pretrained weights")
        if not Path(pretrained_weights).is_file():
            raise FileNotFoundError(
                f"pretrained weights {pretrained_weights} not found (a local file; nothing is downloaded)"
            )
    with GLOBAL_RNG:
        set_seed(seed)
        return (
            module.Baseline() if pretrained_weights is None else module.Baseline(pretrained_weights=pretrained_weights)
        )

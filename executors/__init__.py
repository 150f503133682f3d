"""Per-site execution: ``SiteTrainer`` (plain PyTorch, testable alone) and ``FlambySiteExecutor`` (the NVFlare
``Executor`` that serves ``train`` and ``validate`` tasks with it); imported when first asked for, so that
``executors.settings`` stays light."""

from __future__ import annotations

_LAZY = {
    "FlambySiteExecutor": "executors.site_executor",
    "SiteTrainer": "executors.trainer",
    "TrainResult": "executors.trainer",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'executors' has no attribute {name!r}")


__all__ = ["FlambySiteExecutor", "SiteTrainer", "TrainResult"]

"""Per-site execution: ``SiteTrainer`` (plain PyTorch, testable alone) and ``FlambySiteExecutor``
(the NVFlare ``Executor`` that serves ``train`` and ``validate`` tasks with it)."""

from executors.site_executor import FlambySiteExecutor
from executors.trainer import SiteTrainer, TrainResult

__all__ = ["FlambySiteExecutor", "SiteTrainer", "TrainResult"]

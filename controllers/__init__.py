"""Federated strategies as NVFlare ``ModelController`` workflows, all built on ``FlambyController``."""

from controllers.base import FlambyController, SiteResult
from controllers.fedavg import FedAvg

__all__ = ["FlambyController", "SiteResult", "FedAvg"]

"""Federated strategies as NVFlare ``ModelController`` workflows, all built on ``FlambyController``."""

from controllers.base import FlambyController, RoundOutcome, SiteResult
from controllers.cyclic import Cyclic
from controllers.fedavg import FedAvg
from controllers.fedopt import FedAdagrad, FedAdam, FedOpt, FedYogi
from controllers.fedprox import FedProx
from controllers.scaffold import Scaffold

STRATEGY_CLASSES = {
    "fedavg": FedAvg, "fedprox": FedProx, "scaffold": Scaffold, "cyclic": Cyclic,
    "fedadam": FedAdam, "fedyogi": FedYogi, "fedadagrad": FedAdagrad,
}

__all__ = [
    "FlambyController", "RoundOutcome", "SiteResult", "FedAvg", "FedProx", "Scaffold", "Cyclic",
    "FedOpt", "FedAdam", "FedYogi", "FedAdagrad", "STRATEGY_CLASSES",
]

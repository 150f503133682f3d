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



def flamby_method(strategy: str, num_updates: int = 100) -> str:
    """FLamby's label of a strategy run, e.g. ``flamby_method("fedavg") == "FedAvg100"``."""
    return f"{STRATEGY_CLASSES[strategy].strategy_name}{num_updates}"


__all__ = [
    "flamby_method",
    "FlambyController", "RoundOutcome", "SiteResult", "FedAvg", "FedProx", "Scaffold", "Cyclic",
    "FedOpt", "FedAdam", "FedYogi", "FedAdagrad", "STRATEGY_CLASSES",
]

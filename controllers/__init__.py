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


def __getattr__(name: str):
    """A job naming an unknown strategy class fails at start with the list of known ones."""
    known = ", ".join(f"controllers.{cls.__name__}" for cls in STRATEGY_CLASSES.values())
    raise AttributeError(f"unknown strategy {name!r}; flamby-flare strategies: {known}")


def flamby_method(strategy: str, num_updates: int = 100) -> str:
    """FLamby's label of a strategy run, e.g. ``flamby_method("fedavg") == "FedAvg100"``."""
    return f"{STRATEGY_CLASSES[strategy].strategy_name}{num_updates}"


__all__ = [
    "flamby_method",
    "FlambyController", "RoundOutcome", "SiteResult", "FedAvg", "FedProx", "Scaffold", "Cyclic",
    "FedOpt", "FedAdam", "FedYogi", "FedAdagrad", "STRATEGY_CLASSES",
]

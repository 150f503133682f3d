"""Federated strategies, each one file holding its server rule and its site rule (``base.Strategy``), and
FLamby's in-process API over them (``in_process``): FLamby's classes with FLamby's signatures,

    from flamby_flare.strategies import FedAvg   # was: from flamby.strategies import FedAvg
    model = FedAvg(training_dataloaders, model, loss, torch.optim.SGD, lr, num_updates, nrounds).run()[0]

The same strategies run in NVFlare as ``controllers.<Label>`` (``controllers.FedAvg`` ...). A new strategy
is one new file here (docs/strategies.md, "Write a strategy").
"""

from flamby_flare.strategies.base import (
    REGISTRY,
    LocalRound,
    SiteResult,
    SiteRule,
    Strategy,
    get_strategy,
    load_registry,
    make_strategy,
    play_round,
    strategy_names,
)
from flamby_flare.strategies.cyclic import Cyclic
from flamby_flare.strategies.fed_avg import FedAvg
from flamby_flare.strategies.fed_avg_fine_tuning import FedAvgFineTuning
from flamby_flare.strategies.fed_opt import FedAdagrad, FedAdam, FedOpt, FedYogi
from flamby_flare.strategies.fed_prox import FedProx
from flamby_flare.strategies.in_process import DataLoaderWithMemory, InProcessStrategy
from flamby_flare.strategies.scaffold import Scaffold

__all__ = [
    "FedAvg",
    "FedProx",
    "Scaffold",
    "Cyclic",
    "FedOpt",
    "FedAdam",
    "FedYogi",
    "FedAdagrad",
    "FedAvgFineTuning",
    "DataLoaderWithMemory",
    "InProcessStrategy",
    "Strategy",
    "SiteRule",
    "SiteResult",
    "LocalRound",
    "REGISTRY",
    "get_strategy",
    "load_registry",
    "make_strategy",
    "play_round",
    "strategy_names",
]

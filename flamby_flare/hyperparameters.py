"""FLamby's benchmark hyperparameters per (dataset, strategy), as recorded in its result CSVs (reference §3).

``learning_rate`` is the sites' SGD lr; ``server_learning_rate`` is SCAFFOLD's or the FedOpt server lr;
``mu`` is FedProx's; ``tau`` FedOpt's (FLamby's class default 1e-3 where its config omits it). FedOpt uses
beta1 = 0.9 and beta2 = 0.999 everywhere. All strategies run 100 local updates per round.
"""

from __future__ import annotations

STRATEGIES: tuple[str, ...] = ("fedavg", "fedprox", "scaffold", "cyclic", "fedadam", "fedyogi", "fedadagrad")
NUM_UPDATES = 100
BETA1, BETA2 = 0.9, 0.999


def _fedopt(lr: float, slr: float, tau: float) -> dict:
    return {"learning_rate": lr, "server_learning_rate": slr, "tau": tau}


# dataset: (fedavg lr, (fedprox lr, mu), (scaffold lr, slr), cyclic lr, (fedadam lr, slr), (fedyogi lr, slr),
#           (fedadagrad lr, slr), tau)
_TABLE = {
    "fed_camelyon16": (
        0.3162278,
        (0.3162278, 0.01),
        (0.1, 3.162278),
        0.01,
        (0.001, 3.162278),
        (0.003162278, 1.0),
        (0.01, 0.003162278),
        1e-3,
    ),
    "fed_lidc_idri": (
        0.001,
        (0.001, 0.01),
        (0.031623, 1.0),
        0.031623,
        (0.316228, 0.01),
        (0.1, 0.001),
        (0.1, 0.1),
        1e-3,
    ),
    "fed_ixi": (0.001, (0.001, 0.1), (0.001, 1.0), 1e-05, (0.0001, 0.1), (0.0001, 0.1), (0.0001, 0.1), 1e-8),
    "fed_tcga_brca": (0.1, (0.1, 0.1), (0.01, 1.0), 0.01, (0.01, 0.1), (0.01, 0.1), (0.01, 1.0), 1e-8),
    "fed_kits19": (0.03, (0.1, 0.001), (0.1, 1.0), 0.3, (0.1, 0.01), (0.1, 0.01), (0.1, 0.1), 1e-8),
    "fed_isic2019": (
        0.01,
        (0.01, 0.001),
        (0.01, 1.0),
        0.0031622776601683,
        (0.01, 0.0031622776601683),
        (0.01, 0.0031622776601683),
        (0.01, 0.0316227766016837),
        1e-3,
    ),
    "fed_heart_disease": (
        0.001,
        (0.001, 0.01),
        (0.001, 1.0),
        0.01,
        (0.01, 0.01),
        (0.003162, 0.01),
        (0.003162, 0.316228),
        1e-8,
    ),
}
# Fed-Synthetic has no FLamby benchmark: it takes Fed-Heart-Disease's settings (the other small linear model).
_TABLE["fed_synthetic"] = _TABLE["fed_heart_disease"]


def flamby_hyperparameters(dataset: str, strategy: str) -> dict:
    """The controller arguments FLamby's benchmark used for ``strategy`` on ``dataset``."""
    if dataset not in _TABLE:
        raise KeyError(f"no FLamby hyperparameters for dataset {dataset!r}")
    avg, prox, scaffold, cyclic, adam, yogi, adagrad, tau = _TABLE[dataset]
    table = {
        "fedavg": {"learning_rate": avg},
        "fedprox": {"learning_rate": prox[0], "mu": prox[1]},
        "scaffold": {"learning_rate": scaffold[0], "server_learning_rate": scaffold[1]},
        "cyclic": {"learning_rate": cyclic, "deterministic_cycle": False},
        "fedadam": _fedopt(*adam, tau),
        "fedyogi": _fedopt(*yogi, tau),
        "fedadagrad": _fedopt(*adagrad, tau),
    }
    if strategy not in table:
        raise KeyError(f"unknown strategy {strategy!r}; strategies: {', '.join(STRATEGIES)}")
    return dict(table[strategy])


def run_hyperparameters(dataset: str, strategy: str) -> dict:
    """FLamby's for its seven strategies; for another registered strategy, FedAvg's learning rate (its
    other hyperparameters keep their defaults)."""
    if strategy in STRATEGIES:
        return flamby_hyperparameters(dataset, strategy)
    return {"learning_rate": flamby_hyperparameters(dataset, "fedavg")["learning_rate"]}

"""FLamby's paper example (Listing 1) on Fed-Heart-Disease, one strategy, in one process, with FLamby's
benchmark settings and seeding (``set_seed(seed); Baseline()`` shared, ``set_seed(seed)`` again before
``run()``, train loaders shuffled, batch 4, 100 updates, FLamby's rounds and hyperparameters).

The same code runs on FLamby (``--impl flamby``, with the peer venv's python) and on this project
(``--impl ours``): only the imports differ. Prints the per-site accuracies as JSON and a TIMING line.
Usage: python benchmarks/listing1.py --impl ours|flamby --strategy fedavg [--seed 42] [--data-root DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import time

t0 = time.time()
parser = argparse.ArgumentParser()
parser.add_argument("--impl", choices=("ours", "flamby"), required=True)
parser.add_argument("--strategy", default="fedavg")
parser.add_argument("--seed", type=int, default=42)
parser.add_argument("--data-root", help="ours: the data root holding fed_heart_disease (default: FLAMBY_FLARE_DATA)")
args = parser.parse_args()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

if args.impl == "flamby":
    from flamby import strategies
    from flamby.datasets.fed_heart_disease import (
        BATCH_SIZE,
        NUM_CLIENTS,
        Baseline,
        BaselineLoss,
        FedHeartDisease,
        get_nb_max_rounds,
        metric,
    )
    from flamby.utils import evaluate_model_on_tests

    def dataset(center, train):
        return FedHeartDisease(center=center, train=train)
else:
    from flamby_flare import strategies
    from flamby_flare.datasets.fed_heart_disease import (
        BATCH_SIZE,
        NUM_CLIENTS,
        Baseline,
        BaselineLoss,
        FedHeartDisease,
        get_nb_max_rounds,
        metric,
    )
    from flamby_flare.paths import dataset_dir
    from flamby_flare.utils import evaluate_model_on_tests

    def dataset(center, train):
        return FedHeartDisease(center=center, train=train, data_path=dataset_dir("fed_heart_disease", args.data_root))


# FLamby's benchmark hyperparameters for Fed-Heart-Disease (its config_heart_disease.json)
SETTINGS = {
    "fedavg": ("FedAvg", 0.001, {}),
    "fedprox": ("FedProx", 0.001, {"mu": 0.01}),
    "scaffold": ("Scaffold", 0.001, {"server_learning_rate": 1.0}),
    "cyclic": ("Cyclic", 0.01, {}),
    "fedadam": ("FedAdam", 0.01, {"server_learning_rate": 0.01, "tau": 1e-8}),
    "fedyogi": ("FedYogi", 0.003162, {"server_learning_rate": 0.01, "tau": 1e-8}),
    "fedadagrad": ("FedAdagrad", 0.003162, {"server_learning_rate": 0.316228, "tau": 1e-8}),
}


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


t_import = time.time()
name, lr, extra = SETTINGS[args.strategy]
if args.strategy == "cyclic":
    extra = {"rng": np.random.default_rng(args.seed), "deterministic_cycle": False}
set_seed(args.seed)
model = Baseline()
train = [DataLoader(dataset(i, True), batch_size=BATCH_SIZE, shuffle=True) for i in range(NUM_CLIENTS)]
test = [DataLoader(dataset(i, False), batch_size=BATCH_SIZE, shuffle=False) for i in range(NUM_CLIENTS)]
strategy = getattr(strategies, name)(
    train, model, BaselineLoss(), torch.optim.SGD, lr, 100, get_nb_max_rounds(100), **extra
)
set_seed(args.seed)
t_train = time.time()
trained = strategy.run()[0]
t_eval = time.time()
perf = evaluate_model_on_tests(trained, test, metric, use_gpu=False)
t_end = time.time()
print(json.dumps({"impl": args.impl, "strategy": args.strategy, "per_site": [float(v) for v in perf.values()]}))
print(
    f"TIMING import {t_import - t0:.2f} setup {t_train - t_import:.2f} train {t_eval - t_train:.2f} "
    f"eval {t_end - t_eval:.2f} total {t_end - t0:.2f}"
)

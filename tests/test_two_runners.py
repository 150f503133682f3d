"""One strategy, two runners: FLamby's in-process API (``flamby_flare.strategies``) and NVFlare's simulator
run the same strategy code, so from the same seed and the same batch streams they end with bit-identical
global models (and strategy states), for every strategy; SCAFFOLD, whose sites keep state between rounds,
also with NVFlare swapping one process between the sites (``-t 1``, in ``tests/test_simulator.py``)."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from executors.batch_stream import BatchStream
from flamby_flare.datasets import fed_heart_disease as heart
from flamby_flare.model_state import initial_model
from flamby_flare.seeding import derive_seed
from flamby_flare.strategies import Cyclic, FedAdagrad, FedAdam, FedAvg, FedProx, FedYogi, Scaffold
from tests.conftest import HEART_STRATEGIES as STRATEGIES

pytestmark = pytest.mark.simulator
SEED, ROUNDS, UPDATES = 42, 2, 20  # as conftest.heart_strategy_runs


class StreamSampler:
    """A site's ``BatchStream`` as a DataLoader's batch sampler: the i-th pass over the loader is epoch i, so
    FLamby's endless iteration of the loader yields exactly the NVFlare site's batches."""

    def __init__(self, stream: BatchStream):
        self.stream, self.epoch = stream, 0
        self.batch_size = stream.batch_size

    def __len__(self) -> int:
        return self.stream.batches_per_epoch

    def __iter__(self):
        order, self.epoch = self.stream.epoch_order(self.epoch), self.epoch + 1
        size = self.stream.batch_size
        for b in range(len(self)):
            yield order[b * size : (b + 1) * size].tolist()


def site_loaders(data_dir, batch_size: int, seed: int) -> list[DataLoader]:
    """Each center's train set, batched as its NVFlare site batches it."""
    loaders = []
    for center in range(heart.NUM_CLIENTS):
        train = heart.FedClass(center=center, train=True, data_path=data_dir)
        loaders.append(
            DataLoader(
                train, batch_sampler=StreamSampler(BatchStream(len(train), batch_size, derive_seed(seed, center)))
            )
        )
    return loaders


def endless(loader):
    """A loader's batches forever, the loader restarting when done (FLamby's ``DataLoaderWithMemory``)."""
    while True:
        yield from loader


def in_process(strategy: str, hp: dict, data_dir, seed: int = SEED, rounds: int = ROUNDS, updates: int = UPDATES):
    """The in-process run of ``strategy`` with FLamby's API; its final global state and strategy state."""
    classes = {
        "fedavg": FedAvg,
        "fedprox": FedProx,
        "scaffold": Scaffold,
        "cyclic": Cyclic,
        "fedadam": FedAdam,
        "fedyogi": FedYogi,
        "fedadagrad": FedAdagrad,
    }
    args = {k: v for k, v in hp.items() if k not in ("learning_rate", "optimizer_class", "num_updates", "nrounds")}
    if strategy not in ("scaffold",):
        args["seed"] = seed
    run = classes[strategy](
        site_loaders(data_dir, heart.BATCH_SIZE, seed),
        initial_model(heart, seed),
        heart.BaselineLoss(),
        torch.optim.SGD,
        hp["learning_rate"],
        updates,
        rounds,
        **args,
    )
    run.run()
    return run.params, run.strategy_state


def assert_same(saved: dict, params: dict, what: str) -> None:
    assert set(saved) == set(params), what
    for key, value in saved.items():
        assert np.array_equal(value.numpy(), np.asarray(params[key])), f"{what}: {key} differs"


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_in_process_equals_nvflare_bit_for_bit(strategy, heart_strategy_runs, heart_dir):
    """The seven strategies' NVFlare runs (``conftest.heart_strategy_runs``: one job, 4 live site processes)."""
    from flamby_flare.hyperparameters import flamby_hyperparameters

    saved = torch.load(heart_strategy_runs[strategy] / "FL_global_model.pt", weights_only=True)
    params, state = in_process(strategy, flamby_hyperparameters("fed_heart_disease", strategy), heart_dir)
    assert_same(saved["model"], params, strategy)
    assert set(saved["strategy_state"]) == set(state)
    for name, value in state.items():
        assert_same(saved["strategy_state"][name], value, f"{strategy} {name}")

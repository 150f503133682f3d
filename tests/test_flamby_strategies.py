"""FLamby's own strategy tests (owkin/FLamby at edacf54, ``tests/strategies/``), ported.

The algorithm tests (FedAdam equals Adam, FedProx's proximal step, SCAFFOLD's first round and correction)
are FLamby's with only the imports changed: they run this project's in-process strategies
(``flamby_flare.strategies``) through FLamby's API. The integration tests train FLamby's MLP with 1, 2 and
10 clients; FLamby downloads MNIST for them, here they use scikit-learn's bundled digits (8 x 8 images, so
the MLP's input is 64 wide), with FLamby's thresholds: on 1,347 training images instead of 60,000, 10 rounds
of 50 updates reach them (FLamby runs 50 rounds of 100 on MNIST, which would add minutes to the suite).

FLamby's tests are MIT-licensed: Copyright (c) 2022 Owkin (see FLamby's LICENSE).
"""

import copy

import numpy as np
import pytest
import torch
import torch.utils.data as data
from sklearn.metrics import accuracy_score
from torch import nn
from torch.utils.data import DataLoader as dl
from torch.utils.data._utils.collate import default_collate

from flamby_flare.datasets.fed_dummy_dataset import Baseline, BaselineLoss, FedDummyDataset
from flamby_flare.strategies.cyclic import Cyclic
from flamby_flare.strategies.fed_avg import FedAvg
from flamby_flare.strategies.fed_opt import FedAdam
from flamby_flare.strategies.fed_prox import FedProx
from flamby_flare.strategies.scaffold import Scaffold
from flamby_flare.utils import evaluate_model_on_tests


# ---- FLamby's tests/strategies/test_fed_adam.py ---------------------------------------------------
@pytest.mark.parametrize(
    "seed, betas, epsilon",
    [(42, (0.5, 0.8), 1.0), (43, (0.9, 0.999), 1e-8), (44, (0.5, 0.5), 1.0e-4)],
)
def test_fed_adam(seed, betas, epsilon):
    r"""FedAdam is not entirely the same as Adam in the 1 client only case (no bias correction); with client
    lr 1, server lr sqrt(1 - beta2) / (1 - beta1), tau = epsilon sqrt(1 - beta2), one update and one round,
    they are equal (in doubles)."""
    LR = 1.0
    slr = np.sqrt((1.0 - betas[1])) / (1.0 - betas[0])
    num_updates = 1
    num_rounds = 1
    loss = BaselineLoss()
    torch.manual_seed(seed)

    m1 = Baseline().to(torch.double)
    m2 = copy.deepcopy(m1)

    def collate_fn_double(batch):
        outputs = default_collate(batch)
        return [o.to(torch.double) for o in outputs]

    # FedAdam
    torch.manual_seed(seed)
    training_dataloaders = [
        dl(
            FedDummyDataset(center=0, train=True, pooled=True),
            batch_size=32,
            shuffle=False,
            collate_fn=collate_fn_double,
        )
    ]
    s = FedAdam(
        training_dataloaders,
        m1,
        loss,
        torch.optim.SGD,
        LR,
        num_updates=num_updates,
        nrounds=num_rounds,
        log=False,
        tau=epsilon * np.sqrt((1.0 - betas[1])),
        server_learning_rate=slr,
        beta1=betas[0],
        beta2=betas[1],
    )
    m1 = s.run()[0]
    weights_model_from_strat = [p.detach().numpy() for p in m1.parameters()]

    # Reference
    torch.manual_seed(seed)
    training_dataloaders = [
        dl(
            FedDummyDataset(center=0, train=True, pooled=True),
            batch_size=32,
            shuffle=False,
            collate_fn=collate_fn_double,
        )
    ]
    it = iter(training_dataloaders[0])
    adam_optim = torch.optim.Adam(m2.parameters(), lr=LR, betas=betas, eps=epsilon)
    for _ in range(num_updates):
        adam_optim.zero_grad()
        X, y = next(it)
        y_pred = m2(X)
        ls = loss(y_pred, y)
        ls.backward()
        adam_optim.step()

    weights_model_from_adam = [p.detach().numpy() for p in m2.parameters()]

    assert all([np.allclose(w1, w2) for w1, w2 in zip(weights_model_from_strat, weights_model_from_adam)])


# ---- FLamby's tests/strategies/test_fed_prox.py (test_fed_prox_algorithm) -------------------------
@pytest.mark.parametrize(
    "seed, lr, mu",
    [(42, 0.01, 0.0), (43, 0.001, 1.0), (44, 0.0001, 5.0), (45, 7e-5, 5e-4)],
)
def test_fed_prox_algorithm(seed, lr, mu):
    r"""FedProx adds an anchor term from the global model at each round: the update is
    - lr * grad + mu (var - global_var), as in the authors' implementation."""
    num_updates = 10
    num_rounds = 1
    loss = BaselineLoss()
    torch.manual_seed(seed)

    m1 = Baseline().to(torch.double)
    m2 = copy.deepcopy(m1)

    def collate_fn_double(batch):
        outputs = default_collate(batch)
        return [o.to(torch.double) for o in outputs]

    torch.manual_seed(seed)
    training_dataloaders = [
        dl(
            FedDummyDataset(center=0, train=True, pooled=True),
            batch_size=32,
            shuffle=False,
            collate_fn=collate_fn_double,
        )
    ]
    weights_global_model = [p.detach().clone() for p in m1.parameters()]

    s = FedProx(
        training_dataloaders,
        m1,
        loss,
        torch.optim.SGD,
        lr,
        num_updates=num_updates,
        nrounds=num_rounds,
        log=False,
        mu=mu,
    )
    m1 = s.run()[0]
    weights_model_after_fedprox = [p.detach().numpy() for p in m1.parameters()]

    # Reference
    torch.manual_seed(seed)
    training_dataloaders = [
        dl(
            FedDummyDataset(center=0, train=True, pooled=True),
            batch_size=32,
            shuffle=False,
            collate_fn=collate_fn_double,
        )
    ]
    it = iter(training_dataloaders[0])
    opt = torch.optim.SGD(m2.parameters(), lr=lr)
    for _ in range(num_updates):
        opt.zero_grad()
        X, y = next(it)
        y_pred = m2(X)
        ls = loss(y_pred, y)
        ls.backward()
        with torch.no_grad():
            for var, vstar in zip(m2.parameters(), weights_global_model):
                var.data -= lr * mu * (var.data - vstar)
        opt.step()

    weights_model_ref = [p.detach().numpy() for p in m2.parameters()]

    assert all([np.allclose(w1, w2) for w1, w2 in zip(weights_model_ref, weights_model_after_fedprox)])


# ---- FLamby's tests/strategies/test_scaffold.py (test_scaffold_algorithm) -------------------------
@pytest.mark.parametrize("seed, lr", [(42, 0.01), (43, 0.001), (44, 0.0001), (45, 7e-5)])
def test_scaffold_algorithm(seed, lr):
    r"""SCAFFOLD adds a correction to every update step: 0 in the first round; then it depends on the previous
    client models. The update is new_params = params - lr * (grad + correction)."""
    loss = BaselineLoss()
    torch.manual_seed(seed)
    m1 = Baseline().to(torch.double)
    m2 = copy.deepcopy(m1)
    m3 = copy.deepcopy(m1)

    def collate_fn_double(batch):
        outputs = default_collate(batch)
        return [o.to(torch.double) for o in outputs]

    # Generate data.
    torch.manual_seed(seed)
    training_dataloaders = [
        dl(
            FedDummyDataset(center=0, train=True, pooled=True),
            batch_size=32,
            shuffle=False,
            collate_fn=collate_fn_double,
        )
    ]
    # Run SCAFFOLD for 1 step.
    s = Scaffold(
        training_dataloaders,
        m1,
        loss,
        torch.optim.SGD,
        lr,
        num_updates=1,
        nrounds=1,
        log=False,
    )
    m1 = s.run()[0]
    weights_after_scaffold = [p.detach().numpy() for p in m1.parameters()]

    # Run FedAvg for 1 round.
    torch.manual_seed(seed)
    training_dataloaders = [
        dl(
            FedDummyDataset(center=0, train=True, pooled=True),
            batch_size=32,
            shuffle=False,
            collate_fn=collate_fn_double,
        )
    ]
    f = FedAvg(
        training_dataloaders,
        m2,
        loss,
        torch.optim.SGD,
        lr,
        num_updates=1,
        nrounds=1,
        log=False,
    )
    m2 = f.run()[0]
    weights_after_fedavg = [p.detach().numpy() for p in m2.parameters()]

    # Run SCAFFOLD with modified previous state for 1 step
    torch.manual_seed(seed)
    training_dataloaders = [
        dl(
            FedDummyDataset(center=0, train=True, pooled=True),
            batch_size=32,
            shuffle=False,
            collate_fn=collate_fn_double,
        )
    ]
    modified_s = Scaffold(
        training_dataloaders,
        m3,
        loss,
        torch.optim.SGD,
        lr,
        num_updates=1,
        nrounds=1,
        log=False,
    )
    # Set previous_state to all zeros.
    modified_s.previous_client_state_list = [
        [np.zeros_like(p) for p in modified_s.models_list[0]._get_current_params()]
    ]
    # Compute induced correction.
    # prev_correction + (server_state - previous_state)/lr = server_state/lr.
    induced_correction = [p.detach().numpy() / lr for p in m3.parameters()]
    m3 = modified_s.run()[0]
    weights_after_modifed_scaffold = [p.detach().numpy() for p in m3.parameters()]

    # When running only for 1 round, FedAvg and Scaffold should have same weights.
    assert all([np.allclose(w1, w2) for w1, w2 in zip(weights_after_scaffold, weights_after_fedavg)])
    # The corrected weights should differ from FedAvg by correction.
    # Check if Scaffold update satisfies normal_update + lr*correction.
    assert all(
        [
            np.allclose(w1, w2 + lr * c)
            for w1, w2, c in zip(weights_after_modifed_scaffold, weights_after_fedavg, induced_correction)
        ]
    )


# ---- FLamby's integration tests (test_fed_avg, test_fed_prox_integration, test_scaffold_integration,
# test_cyclic), on scikit-learn's digits instead of MNIST -------------------------------------------
class NeuralNetwork(nn.Module):
    """FLamby's MLP of these tests, 64 inputs (8 x 8 digits) instead of 784 (28 x 28 MNIST)."""

    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        n_hidden = 128
        self.linear_relu_stack = nn.Sequential(
            nn.Linear(8 * 8, n_hidden),
            nn.ReLU(),
            nn.Linear(n_hidden, n_hidden),
            nn.ReLU(),
            nn.Linear(n_hidden, 10),
        )

    def forward(self, x):
        return self.linear_relu_stack(self.flatten(x))


def accuracy(y_true, y_pred):
    return accuracy_score(y_true, y_pred.argmax(axis=1))


def _digits(n_clients: int):
    """Digits' 1797 images (scaled to [0, 1]), 75 % for training split into ``n_clients`` random parts (FLamby's
    random_split) and 25 % for the test, stratified; loaders of batch 100, training shuffled."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X / 16.0, y, test_size=0.25, stratify=y, random_state=0)

    def tensors(X, y):
        return data.TensorDataset(torch.tensor(X, dtype=torch.float32).reshape(-1, 1, 8, 8), torch.tensor(y))

    training_data = tensors(X_train, y_train)
    splits = [len(training_data) // n_clients] * n_clients
    splits[-1] += len(training_data) % n_clients
    train = [dl(part, batch_size=100, shuffle=True) for part in data.random_split(training_data, splits)]
    return train, dl(tensors(X_test, y_test), batch_size=100, shuffle=False)


INTEGRATION = {  # strategy: (optimizer, lr, extra arguments, FLamby's accuracy threshold)
    "fed_avg": (FedAvg, torch.optim.Adam, 0.001, {}, 0.95),
    "fed_prox": (FedProx, torch.optim.Adam, 0.001, {"mu": 0.1}, 0.95),
    "scaffold": (Scaffold, torch.optim.SGD, 0.1, {}, 0.95),
    "cyclic": (Cyclic, torch.optim.Adam, 0.001, {"deterministic_cycle": False}, 0.90),
}


@pytest.mark.parametrize("n_clients", [1, 2, 10])
@pytest.mark.parametrize("strategy", list(INTEGRATION))
def test_integration_on_digits(strategy, n_clients, tmp_path):
    cls, optimizer_class, lr, extra, threshold = INTEGRATION[strategy]
    torch.manual_seed(n_clients)
    train_dataloaders, test_dataloader = _digits(n_clients)
    if strategy == "cyclic":  # as FLamby's test: a seeded order, and TensorBoard logging on
        extra = {**extra, "rng": np.random.default_rng(42), "log": True, "log_period": 10, "logdir": str(tmp_path)}
    s = cls(train_dataloaders, NeuralNetwork(), nn.CrossEntropyLoss(), optimizer_class, lr, 50, 10, **extra)
    m = s.run()
    res = evaluate_model_on_tests(m[0], [test_dataloader], accuracy)
    assert res["client_test_0"] > threshold

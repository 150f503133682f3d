"""FedPer and FedRep (``flamby_flare/strategies/fed_per.py``, ``fed_rep.py``): on a two-layer model, three
rounds of the in-process runner against the algorithms in plain torch (the federated body, each site's own
head, FedRep's head-then-body steps), and FedRep in NVFlare's simulator bit-identical to the in-process
runner, each site's personalized model (the final global body with its own head) evaluated beside it."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from flamby_flare.datasets import fed_heart_disease as heart
from flamby_flare.evaluation import evaluate_state, flamby_test_sets
from flamby_flare.model_state import initial_model
from flamby_flare.personalization import head_keys
from flamby_flare.strategies.fed_per import FedPer
from flamby_flare.strategies.fed_rep import FedRep
from tests import golden
from tests.simulator import pinned, run_job
from tests.test_two_runners import assert_same, endless, site_loaders

ROUNDS, UPDATES, LR, HEAD_UPDATES = 3, 8, 0.05, 3


class TwoLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(5, 4)
        self.head = nn.Linear(4, 1)

    def forward(self, x):
        return self.head(torch.relu(self.body(x)))


def _loaders():
    """Three sites of 16 rows each, their labels from different rules (each site needs its own head)."""
    g = torch.Generator().manual_seed(0)
    loaders = []
    for site in range(3):
        x = torch.randn(16, 5, generator=g)
        y = (x[:, site] > 0).float()[:, None]
        loaders.append(DataLoader(TensorDataset(x, y), batch_size=4, shuffle=False))
    return loaders


def _direct(head_updates: int | None):
    """FedPer (``head_updates`` None) or FedRep written out: per round each site's model is the global body
    with its own head, SGD on it (FedRep: the head alone first, then the body alone), then the size-weighted
    (here equal) mean of the whole states; the heads stay at their sites."""
    torch.manual_seed(1)
    model = TwoLayers()
    glob = {k: v.clone() for k, v in model.state_dict().items()}
    heads = [{k: v.clone() for k, v in glob.items() if k.startswith("head.")} for _ in range(3)]
    iters = [endless(loader) for loader in _loaders()]
    for _ in range(ROUNDS):
        states = []
        for site in range(3):
            local = TwoLayers()
            local.load_state_dict({**glob, **heads[site]})
            optimizer = torch.optim.SGD(local.parameters(), lr=LR)
            for step in range(UPDATES):
                x, y = next(iters[site])
                optimizer.zero_grad()
                nn.BCEWithLogitsLoss()(local(x), y).backward()
                if head_updates is not None:
                    frozen = local.body if step < head_updates else local.head
                    for p in frozen.parameters():
                        p.grad.zero_()
                optimizer.step()
            state = {k: v.detach().clone() for k, v in local.state_dict().items()}
            heads[site] = {k: v for k, v in state.items() if k.startswith("head.")}
            states.append(state)
        glob = {k: sum(s[k].double() for s in states) / 3 for k in glob}
        glob = {k: v.float() for k, v in glob.items()}
    return glob, heads


@pytest.mark.parametrize("strategy, head_updates", [(FedPer, None), (FedRep, HEAD_UPDATES)])
def test_the_in_process_runner_equals_the_direct_computation(strategy, head_updates):
    torch.manual_seed(1)
    args = {} if head_updates is None else {"head_updates": head_updates}
    run = strategy(
        _loaders(), TwoLayers(), nn.BCEWithLogitsLoss(), torch.optim.SGD, LR, UPDATES, ROUNDS, seed=0, **args
    )
    run.run()
    glob, heads = _direct(head_updates)
    assert head_keys(TwoLayers()) == ["head.weight", "head.bias"]
    for k, v in glob.items():
        assert np.allclose(run.params[k], v.numpy(), rtol=1e-5, atol=1e-6), k
    name = run.strategy.personal_state
    for client, head in zip(run.models_list, heads):
        kept = client.state.load_round(name, ROUNDS - 1)
        assert set(kept) == set(head) and all(np.allclose(kept[k], head[k].numpy(), rtol=1e-5, atol=1e-6) for k in head)
    assert not np.allclose(heads[0]["head.weight"].numpy(), heads[1]["head.weight"].numpy())


def _heart_in_process(heart_dir):
    run = FedRep(
        site_loaders(heart_dir, heart.BATCH_SIZE, 42),
        initial_model(heart, 42),
        heart.BaselineLoss(),
        torch.optim.SGD,
        0.01,
        10,
        2,
        head_updates=4,
        seed=42,
    )
    run.run()
    return run


@pytest.mark.simulator
def test_fedrep_in_nvflare_equals_the_in_process_runner_with_personalized_metrics(tmp_path, heart_dir, data_root):
    out, summary, saved = run_job(
        tmp_path,
        data_root,
        "fed_heart_disease",
        "fedrep",
        num_rounds=2,
        num_updates=10,
        seed=42,
        learning_rate=0.01,
        head_updates=4,
    )
    run = _heart_in_process(heart_dir)
    assert_same(saved["model"], run.params, "fedrep")
    assert summary["personalization"] == "FedRep"
    tests = flamby_test_sets(heart, heart_dir)
    for center, (site, own) in enumerate(zip(summary["per_site"], run.personal_models())):
        test = {f"client_test_{center}": tests[f"client_test_{center}"]}
        assert summary["per_site_personalized"][site] == pytest.approx(
            evaluate_state(heart, own, test)[f"client_test_{center}"]
        )
    golden.check("simulator/heart_fedrep_seed42", pinned(out))

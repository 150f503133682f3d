"""Personalization at a site, against hand computations: fine-tuning, Ditto's personal update, FedBN's local
normalization layers; settings refused at job start; dual metrics in the results."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from controllers import FedAvg
from executors import SiteTrainer
from executors.batch_stream import BatchStream
from flamby_flare.datasets import get_dataset
from flamby_flare.datasets.tensor_dataset import fetch_batch
from flamby_flare.model_state import initial_model, load_numpy_state, to_numpy_state
from flamby_flare.personalization import Personalization, normalization_keys
from flamby_flare.protocol import TrainPlan
from flamby_flare.results import format_table, result_rows
from flamby_flare.seeding import derive_seed
from flamby_flare.strategies.aggregation import weighted_average

HEART = get_dataset("fed_heart_disease")


def _plan(**personalization):
    return TrainPlan(
        "fed_heart_disease", 42, 0.003, 20, 4, run_key="job-perso", personalization=personalization or None
    )


def _trainer(heart_dir, tmp_path, center=0):
    """A fresh trainer on the same state folder: what a swapped-in site process sees."""
    return SiteTrainer("fed_heart_disease", center, heart_dir.parent, "cpu", state_dir=tmp_path / "state")


def _equal(a, b):
    return set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_fine_tuning_is_n_sgd_steps_on_the_site_copy_only(heart_dir, tmp_path):
    plan = _plan(method="finetune", num_updates=7, learning_rate=0.05)
    trainer = _trainer(heart_dir, tmp_path, center=1)
    final = to_numpy_state(initial_model(HEART, 3))
    kept = copy.deepcopy(final)
    before = trainer.evaluate(final)
    tuned = trainer.personalize(final, plan, total_rounds=2)
    assert _equal(final, kept) and trainer.evaluate(final) == before  # the global model is untouched
    # by hand: 7 SGD steps on the site's stream, continuing after 2 rounds x 20 updates (FLamby's loader memory)
    model, loss_fn = HEART.Baseline(), HEART.BaselineLoss()
    load_numpy_state(model, final)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    stream = BatchStream(trainer.n_train, 4, derive_seed(42, 1))
    for indices in stream.batches(start=40, count=7):
        X, y = fetch_batch(trainer.train_set, indices)
        optimizer.zero_grad()
        loss_fn(model(X), y).backward()
        optimizer.step()
    assert _equal(tuned, to_numpy_state(model))
    assert not _equal(tuned, final)


def test_ditto_personal_update_against_a_hand_computation(heart_dir, tmp_path):
    lam, lr, k = 0.5, 0.02, 5
    plan = _plan(method="ditto", ditto_lambda=lam, learning_rate=lr, num_updates=k)
    w0 = to_numpy_state(initial_model(HEART, 1))
    result = _trainer(heart_dir, tmp_path).train(w0, plan, 0, total_rounds=2)
    # the global update is FedAvg's, bit for bit
    plain = SiteTrainer("fed_heart_disease", 0, heart_dir.parent, "cpu").train(w0, _plan(), 0, total_rounds=2)
    assert _equal(result.params, plain.params)
    w1 = weighted_average([result.params, result.params], [1, 1])  # any next global model
    personal = _trainer(heart_dir, tmp_path).train(w1, plan, 1, total_rounds=2)  # a new process: v from disk
    v_final = _trainer(heart_dir, tmp_path).personalize(w1, plan, total_rounds=2)

    def by_hand(v_start, w, round_index):
        v = {name: torch.tensor(value) for name, value in v_start.items()}
        train = HEART.FedClass(center=0, train=True, data_path=heart_dir)
        stream = BatchStream(len(train), 4, derive_seed(42, 0, 5))
        model = HEART.Baseline()
        for indices in stream.batches(start=round_index * k, count=k):
            load_numpy_state(model, {n: t.numpy() for n, t in v.items()})
            model.zero_grad()
            X, y = fetch_batch(train, indices)
            HEART.BaselineLoss()(model(X), y).backward()
            grads = dict(model.named_parameters())
            v = {n: v[n] - lr * (grads[n].grad + lam * (v[n] - torch.tensor(w[n]))) for n in v}
        return {n: t.numpy() for n, t in v.items()}

    v0 = by_hand(w0, w0, 0)  # Ditto starts the personal model at the first global model
    expected = by_hand(v0, w1, 1)
    for name in expected:
        np.testing.assert_allclose(v_final[name], expected[name], rtol=1e-6, atol=1e-7)
    assert _equal(
        personal.params,
        SiteTrainer("fed_heart_disease", 0, heart_dir.parent, "cpu").train(w1, _plan(), 1, total_rounds=2).params,
    )


class BatchNormBaseline(nn.Module):
    """Heart's logistic regression with a hidden BatchNorm layer (FedBN needs a normalization layer)."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(13, 6)
        self.norm = nn.BatchNorm1d(6)
        self.out = nn.Linear(6, 1)

    def forward(self, x):
        return torch.sigmoid(self.out(torch.relu(self.norm(self.hidden(x)))))


def test_fedbn_keeps_each_sites_normalization_layers_and_aggregates_the_rest(heart_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(HEART, "Baseline", BatchNormBaseline)
    plan = _plan(method="fedbn")
    local = normalization_keys(BatchNormBaseline())
    assert local == ["norm.weight", "norm.bias", "norm.running_mean", "norm.running_var", "norm.num_batches_tracked"]
    trainers = [
        SiteTrainer("fed_heart_disease", c, heart_dir.parent, "cpu", state_dir=tmp_path / f"s{c}") for c in (0, 1)
    ]
    x = to_numpy_state(initial_model(HEART, 0))
    previous = []
    for r in range(3):
        results = [t.train(x, plan, r, total_rounds=3) for t in trainers]
        if r > 0:  # each site started the round from the server's model with its own last normalization layers
            for t, mine in zip(trainers, previous):
                start = t.personalization(plan).before_training(x, t.state(plan), r)
                assert all(np.array_equal(start[k], mine.params[k]) for k in local)
                assert all(np.array_equal(start[k], x[k]) for k in x if k not in local)
        previous = results
        x = weighted_average([res.params for res in results], [res.n_samples for res in results])
    assert not np.array_equal(results[0].params["norm.running_mean"], results[1].params["norm.running_mean"])
    personalized = trainers[1].personalize(x, plan, total_rounds=3)
    assert all(np.array_equal(personalized[k], results[1].params[k]) for k in local)
    assert all(np.array_equal(personalized[k], x[k]) for k in x if k not in local)


def test_fedbn_is_refused_for_a_model_without_normalization(heart_dir, tmp_path):
    with pytest.raises(ValueError, match="fedbn: fed_heart_disease's model has no normalization layer"):
        _trainer(heart_dir, tmp_path).train(
            to_numpy_state(initial_model(HEART, 0)), _plan(method="fedbn"), 0, total_rounds=1
        )


def test_bad_personalization_settings_are_refused_at_job_start():
    with pytest.raises(ValueError, match="method must be one of finetune, ditto, fedbn"):
        FedAvg("fed_heart_disease", personalization={"method": "perfedavg"})
    with pytest.raises(ValueError, match="unknown setting.*lambda"):
        FedAvg("fed_heart_disease", personalization={"method": "ditto", "lambda": 1})
    assert Personalization(method="ditto", ditto_lambda=1).label == "ditto(lambda=1)"


def test_dual_metrics_in_results_and_table():
    summary = {
        "dataset": "fed_heart_disease",
        "method": "FedAvg100",
        "seed": 1,
        "metric_name": "accuracy",
        "rounds": 2,
        "num_updates": 20,
        "wall_time_s": 1.0,
        "per_site": {"site-1": 0.5, "site-2": 0.7},
        "mean": 0.6,
        "personalization": "finetune100",
        "per_site_personalized": {"site-1": 0.6, "site-2": 0.9},
        "mean_personalized": 0.75,
        "n_test": {"site-1": 10, "site-2": 10},
        "hyperparameters": {"learning_rate": 0.1},
    }
    rows = result_rows(summary)
    assert [(r["Metric"], r["Metric_personalized"], r["personalization"]) for r in rows] == [
        (0.5, 0.6, "finetune100"),
        (0.7, 0.9, "finetune100"),
    ]
    table = format_table(summary)
    assert "FedAvg100 + finetune100" in table and "personalized" in table
    mean_line = next(line for line in table.splitlines() if line.startswith("mean over sites"))
    assert mean_line.split()[-2:] == ["0.6000", "0.7500"]
    assert table.splitlines()[-2].startswith("fairness: worst ") and table.splitlines()[-1].startswith(
        "fairness, personalized: worst "
    )

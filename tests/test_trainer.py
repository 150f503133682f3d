"""The site's training logic without the NVFlare runtime."""

import numpy as np
import pytest
import torch

from executors.trainer import SiteTrainer
from flamby_flare.datasets import fed_heart_disease as heart
from flamby_flare.model_state import initial_model, to_numpy_state
from flamby_flare.protocol import TrainPlan
from flamby_flare.seeding import set_seed
from flamby_flare.strategies.aggregation import weighted_average
from tests import golden
from tests.golden import fingerprint

PLAN = TrainPlan(dataset="fed_heart_disease", seed=42, learning_rate=0.001, num_updates=100, batch_size=4)


def _init():
    return to_numpy_state(initial_model(heart, 42))


def test_one_update_is_one_sgd_step(data_root):
    trainer = SiteTrainer("fed_heart_disease", 2, data_root, device="cpu")
    params = _init()
    plan = TrainPlan("fed_heart_disease", 42, 0.1, 1, 4)
    result = trainer.train(params, plan, 0)
    # recompute by hand: the first batch of the stream, one gradient step
    from executors.batch_stream import BatchStream
    from flamby_flare.seeding import derive_seed

    idx = next(BatchStream(trainer.n_train, 4, derive_seed(42, 2)).batches(0, 1))
    X, y = trainer.train_set.get_batch(idx)
    w = torch.tensor(params["linear.weight"], requires_grad=True)
    b = torch.tensor(params["linear.bias"], requires_grad=True)
    loss = torch.nn.functional.binary_cross_entropy(torch.sigmoid(X @ w.T + b), y)
    loss.backward()
    np.testing.assert_allclose(result.params["linear.weight"], (w - 0.1 * w.grad).detach().numpy(), rtol=1e-6)
    assert result.loss == pytest.approx(loss.item())
    assert result.n_samples == 30 and result.num_updates == 1


def test_fresh_process_gives_identical_rounds(data_root):
    """A site whose process is swapped out between rounds computes exactly what a long-lived one does."""
    alive = SiteTrainer("fed_heart_disease", 0, data_root, device="cpu")
    params = _init()
    r0 = alive.train(params, PLAN, 0)
    r1 = alive.train(r0.params, PLAN, 1)
    fresh = SiteTrainer("fed_heart_disease", 0, data_root, device="cpu")
    r1_fresh = fresh.train(r0.params, PLAN, 1)
    for key in r1.params:
        np.testing.assert_array_equal(r1.params[key], r1_fresh.params[key])
    assert r1.loss == r1_fresh.loss
    assert not np.array_equal(r0.params["linear.weight"], r1.params["linear.weight"])


def test_local_fedavg_learns_and_evaluates(data_root):
    """The main job's run (heart FedAvg, FLamby's settings, seed 42) driven site by site without NVFlare: its
    recorded result, and per site exactly FLamby's published seed-42 FedAvg100 accuracies."""
    from flamby_flare.reference import load_reference
    from tests.conftest import reference_dir

    trainers = [SiteTrainer("fed_heart_disease", c, data_root, device="cpu") for c in range(4)]
    params = _init()
    before = [t.evaluate(params) for t in trainers]
    losses = []
    for rnd in range(15):
        results = [t.train(params, PLAN, rnd) for t in trainers]
        losses.append(sum(r.loss * r.n_samples for r in results) / sum(r.n_samples for r in results))
        params = weighted_average([r.params for r in results], [r.n_samples for r in results])
    after = [t.evaluate(params) for t in trainers]
    assert losses[-1] < losses[0] - 0.05
    assert np.mean(after) > np.mean(before)
    ref = load_reference(reference_dir(), "fed_heart_disease")
    flamby = ref[(ref.Method == "FedAvg100") & (ref.seed == 42)].set_index("Test")["Metric"]
    assert after == [flamby[f"client_test_{c}"] for c in range(4)]
    golden.check(
        "trainer/heart_fedavg_seed42_15rounds", {"losses": losses, "after": after, "model": fingerprint(params)}
    )
    # evaluate == the metric on predictions computed by hand
    t = trainers[1]
    model = heart.Baseline()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()})
    with torch.no_grad():
        pred = model(t.test_set.X).numpy()
    assert after[1] == heart.metric(t.test_set.y.numpy(), pred)


def test_plan_for_another_dataset_is_refused(data_root):
    trainer = SiteTrainer("fed_heart_disease", 0, data_root, device="cpu")
    bad = TrainPlan("fed_tcga_brca", 42, 0.1, 1, 8)
    with pytest.raises(ValueError, match="server plans 'fed_tcga_brca' but this site serves 'fed_heart_disease'"):
        trainer.train(_init(), bad, 0)


def test_tcga_trainer_c_index(data_root):
    trainer = SiteTrainer("fed_tcga_brca", 0, data_root, device="cpu")
    set_seed(42)
    from flamby_flare.datasets import fed_tcga_brca

    params = to_numpy_state(fed_tcga_brca.Baseline())
    result = trainer.train(params, TrainPlan("fed_tcga_brca", 42, 0.1, 100, 8), 0)
    golden.check(
        "trainer/tcga_center0_round0",
        {"loss": result.loss, "c_index": trainer.evaluate(result.params), "model": fingerprint(result.params)},
    )


def test_auto_device_spreads_sites_over_gpus(monkeypatch):
    from executors.trainer import resolve_device

    assert resolve_device("cpu", 3) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto", 3) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert [resolve_device("auto", c) for c in range(3)] == [torch.device(f"cuda:{i}") for i in (0, 1, 0)]


def test_set_seed_seeds_torch_as_flambys_does():
    """Without an accelerator it seeds the CPU generator alone (torch.manual_seed also queues a CUDA seeding,
    formatting the caller's stack): the same numbers."""
    import random

    set_seed(7)
    ours = (random.random(), np.random.rand(), torch.rand(3), torch.randperm(10))
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    flambys = (random.random(), np.random.rand(), torch.rand(3), torch.randperm(10))
    assert ours[:2] == flambys[:2] and torch.equal(ours[2], flambys[2]) and torch.equal(ours[3], flambys[3])

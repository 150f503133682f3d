"""q-FFL (``flamby_flare/strategies/q_ffl.py``): q-FedAvg's server rule against a direct computation, the
in-process runner against plain torch, NVFlare's simulator bit-identical to the in-process runner, and the
refusals (DP, a site reporting no loss)."""

import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from flamby_flare.datasets import fed_heart_disease as heart
from flamby_flare.jobs import job_files
from flamby_flare.model_state import initial_model
from flamby_flare.settings import SettingError
from flamby_flare.strategies.base import SiteResult, average
from flamby_flare.strategies.q_ffl import LIPSCHITZ, QFFL, START_LOSS, QFFLStrategy
from tests import golden
from tests.simulator import pinned, run_dir, run_job, run_simulator
from tests.test_two_runners import assert_same, endless, site_loaders

SEED, ROUNDS, UPDATES, LR, Q = 42, 3, 10, 0.01, 2.0


def _results(rng, losses, L=100.0):
    return [
        SiteResult(
            f"site-{i + 1}",
            {"w": rng.normal(size=(2, 3)).astype(np.float32), "n": np.float32(i)},
            n_samples=10 * (i + 1),
            loss=0.0,
            seconds=0.0,
            report={START_LOSS: F, LIPSCHITZ: L},
        )
        for i, F in enumerate(losses)
    ]


def test_the_server_rule_is_q_fedavgs():
    rng = np.random.default_rng(0)
    x = {"w": rng.normal(size=(2, 3)).astype(np.float32), "n": np.float32(0)}
    results = _results(rng, [0.3, 0.9, 0.5])
    new, _ = QFFLStrategy(q=Q).aggregate(x, results, {}, ["w"])
    L, w = 100.0, x["w"].astype(np.float64)
    dw = [L * (w - r.params["w"].astype(np.float64)) for r in results]
    F = [r.report[START_LOSS] + 1e-10 for r in results]
    h = sum(Q * f ** (Q - 1) * (d**2).sum() + L * f**Q for f, d in zip(F, dw))
    assert np.allclose(new["w"], w - sum(f**Q * d for f, d in zip(F, dw)) / h, atol=1e-6)
    assert new["n"] == average(results)["n"]  # a buffer: FedAvg's size-weighted mean
    # q = 0: FedAvg with the sites weighted equally
    uniform, _ = QFFLStrategy(q=0.0).aggregate(x, results, {}, ["w"])
    assert np.allclose(uniform["w"], sum(r.params["w"].astype(np.float64) for r in results) / 3, atol=1e-6)


def test_a_site_without_a_usable_loss_or_with_another_l_is_refused():
    rng = np.random.default_rng(1)
    x = {"w": np.zeros((2, 3), np.float32), "n": np.float32(0)}
    for bad in (-1.0, float("nan"), None, "0.5"):
        results = _results(rng, [0.3, bad])
        with pytest.raises(SettingError, match="qffl: site-2 reported no usable loss and L"):
            QFFLStrategy().aggregate(x, results, {}, ["w"])
    results = _results(rng, [0.3, 0.4])
    results[1].report[LIPSCHITZ] = 50.0
    with pytest.raises(SettingError, match="qffl: the sites trained with different L"):
        QFFLStrategy().aggregate(x, results, {}, ["w"])


def test_dp_cannot_serve_it():
    with pytest.raises(ValueError, match="client-level DP cannot serve qffl: its server rule weighs each site"):
        job_files("fed_heart_disease", "qffl", client_dp={"clip_norm": 1.0, "noise_multiplier": 1.0})
    with pytest.raises(ValueError, match="DP-SGD cannot serve qffl: each site reports its un-noised loss"):
        job_files("fed_heart_disease", "qffl", dp_sgd={"noise_multiplier": 1.0, "max_grad_norm": 1.0, "delta": 1e-5})


def _direct(data_dir) -> dict[str, np.ndarray]:
    """q-FedAvg written out with plain torch over the same batches: per round, each site's loss at w^t over
    its whole train set (batches of 4, in order), its local SGD, then the server's update."""
    loaders = site_loaders(data_dir, heart.BATCH_SIZE, SEED)
    iters = [endless(loader) for loader in loaders]
    theta = {k: p.detach().clone() for k, p in initial_model(heart, SEED).named_parameters()}
    L = 1 / LR
    for _ in range(ROUNDS):
        deltas, losses = [], []
        for site, loader in enumerate(loaders):
            local = heart.Baseline()
            local.load_state_dict({k: v.clone() for k, v in theta.items()})
            with torch.no_grad():
                losses.append(
                    sum(
                        float(heart.BaselineLoss()(local(x), y)) * len(y)
                        for x, y in DataLoader(loader.dataset, batch_size=heart.BATCH_SIZE)
                    )
                    / len(loader.dataset)
                )
            optimizer = torch.optim.SGD(local.parameters(), lr=LR)
            for _ in range(UPDATES):
                x, y = next(iters[site])
                optimizer.zero_grad()
                heart.BaselineLoss()(local(x), y).backward()
                optimizer.step()
            deltas.append({k: L * (theta[k].double() - p.detach().double()) for k, p in local.named_parameters()})
        F = [f + 1e-10 for f in losses]
        h = sum(Q * f ** (Q - 1) * sum(float((d[k] ** 2).sum()) for k in d) + L * f**Q for f, d in zip(F, deltas))
        theta = {k: (theta[k].double() - sum(f**Q * d[k] for f, d in zip(F, deltas)) / h).float() for k in theta}
    return {k: v.numpy() for k, v in theta.items()}


def _in_process(data_dir):
    run = QFFL(
        site_loaders(data_dir, heart.BATCH_SIZE, SEED),
        initial_model(heart, SEED),
        heart.BaselineLoss(),
        torch.optim.SGD,
        LR,
        UPDATES,
        ROUNDS,
        q=Q,
        seed=SEED,
    )
    run.run()
    return run.params


def test_the_in_process_runner_equals_the_direct_computation(heart_dir):
    params, direct = _in_process(heart_dir), _direct(heart_dir)
    for k, v in direct.items():
        assert np.allclose(params[k], v, rtol=1e-5, atol=1e-6), k
    with pytest.raises(SettingError, match="DP-SGD cannot serve it: each site reports its un-noised loss"):
        from flamby_flare.strategies.in_process import InProcessStrategy

        InProcessStrategy(
            QFFLStrategy(),
            site_loaders(heart_dir, 4, SEED),
            heart.Baseline(),
            heart.BaselineLoss(),
            torch.optim.SGD,
            LR,
            UPDATES,
            ROUNDS,
            dp_target_epsilon=1.0,
            dp_target_delta=1e-5,
            dp_max_grad_norm=1.0,
        )


@pytest.mark.simulator
def test_nvflare_equals_the_in_process_runner_bit_for_bit(tmp_path, heart_dir, data_root):
    out, summary, saved = run_job(
        tmp_path,
        data_root,
        "fed_heart_disease",
        "qffl",
        num_rounds=ROUNDS,
        num_updates=UPDATES,
        seed=SEED,
        learning_rate=LR,
        q=Q,
    )
    assert_same(saved["model"], _in_process(heart_dir), "qffl")
    assert summary["strategy"] == "QFFL"
    golden.check("simulator/heart_qffl_seed42", pinned(out))


@pytest.mark.simulator
def test_a_hand_edited_job_asking_dp_sgd_sites_for_their_loss_fails_naming_why(tmp_path, data_root):
    """The generator refuses q-FFL with DP-SGD; a job file edited by hand to combine them is refused by
    every site at its first round (the loss is never computed, let alone sent), and the run exits non-zero."""
    from flamby_flare.jobs import write_job

    job = write_job("fed_heart_disease", "qffl", tmp_path, num_rounds=2, num_updates=5, seed=SEED, train_timeout=60)
    config = job / "app" / "config" / "config_fed_client.json"
    client = json.loads(config.read_text())
    client["executors"][0]["executor"]["args"]["dp_sgd"] = {
        "max_grad_norm": 1.1,
        "noise_multiplier": 1.0,
        "delta": 1e-3,
    }
    config.write_text(json.dumps(client))
    proc = run_simulator(job, tmp_path / "ws", 4, {"FLAMBY_FLARE_DATA": str(data_root)})
    assert proc.returncode != 0
    log = (tmp_path / "ws" / "server" / "log.txt").read_text()
    assert (
        "site-1: train failed: qffl needs each site's loss on its training data, which a site under DP-SGD does "
        "not release"
    ) in log
    assert not (run_dir(tmp_path / "ws") / "summary.json").exists()

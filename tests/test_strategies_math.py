"""The strategies' mathematics, without the FL runtime, against hand computations and FLamby's formulation."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from executors.batch_stream import BatchStream
from executors.trainer import SiteTrainer
from flamby_flare.datasets import fed_heart_disease as heart
from flamby_flare.model_state import initial_model, to_numpy_state
from flamby_flare.protocol import TrainPlan
from flamby_flare.seeding import derive_seed
from flamby_flare.strategies.base import SiteResult
from flamby_flare.strategies.fed_avg import FedAvgStrategy
from flamby_flare.strategies.fed_opt import (
    FedAdagradStrategy,
    FedAdamStrategy,
    FedYogiStrategy,
    fedopt_step,
    second_moment,
)
from flamby_flare.strategies.scaffold import ScaffoldStrategy

PARAM_KEYS = ["linear.weight", "linear.bias"]


def _init(seed=42):
    return to_numpy_state(initial_model(heart, seed))


def manual_sgd(trainer: SiteTrainer, params, plan: TrainPlan, round_index: int, extra_grad=None):
    """Plain autograd SGD on the same batches the trainer uses; extra_grad(w, w0) is added to the gradient."""
    w = {k: torch.tensor(v, dtype=torch.float32, requires_grad=True) for k, v in params.items()}
    w0 = {k: torch.tensor(v, dtype=torch.float32) for k, v in params.items()}
    stream = BatchStream(trainer.n_train, plan.batch_size, derive_seed(plan.seed, trainer.center))
    for idx in stream.batches(round_index * plan.num_updates, plan.num_updates):
        X, y = trainer.train_set.get_batch(idx)
        loss = torch.nn.functional.binary_cross_entropy(torch.sigmoid(X @ w["linear.weight"].T + w["linear.bias"]), y)
        grads = torch.autograd.grad(loss, [w[k] for k in PARAM_KEYS])
        with torch.no_grad():
            for k, g in zip(PARAM_KEYS, grads):
                if extra_grad is not None:
                    g = g + extra_grad(k, w[k], w0[k])
                w[k] -= plan.learning_rate * g
    return {k: v.detach().numpy() for k, v in w.items()}


class _Server:
    """A strategy's server rule with its state, as a runner keeps it."""

    def __init__(self, strategy, params=None):
        self.strategy = strategy
        self.state = strategy.initial_state(params or _init(), PARAM_KEYS)

    def aggregate(self, params, results):
        new, self.state = self.strategy.aggregate(params, results, self.state, PARAM_KEYS)
        return new


def _ctl(cls, **kwargs):
    return _Server(cls(**kwargs))


# ---- FedProx ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("mu", [0.0, 0.01, 1.0, 5.0])
def test_fedprox_round_is_sgd_on_grad_plus_mu_times_drift(data_root, mu):
    trainer = SiteTrainer("fed_heart_disease", 1, data_root, device="cpu")
    plan = TrainPlan("fed_heart_disease", 42, 0.05, 10, 4, strategy="fedprox", hyperparameters={"mu": mu})
    params = _init()
    result = trainer.train(params, plan, 0)
    expected = manual_sgd(trainer, params, plan, 0, lambda k, w, w0: mu * (w - w0))
    for k in PARAM_KEYS:
        np.testing.assert_allclose(result.params[k], expected[k], rtol=1e-5, atol=1e-7)
    if mu > 0:  # the proximal term really changes the trajectory
        plain = trainer.train(params, replace(plan, hyperparameters={"mu": 0.0}), 0)
        assert not np.allclose(plain.params["linear.weight"], result.params["linear.weight"], atol=1e-6)


# ---- FedOpt ----------------------------------------------------------------------------------------
def test_second_moment_rules_by_hand():
    v, d = np.array([0.5, 0.01]), np.array([0.2, -0.3])  # d^2 = [0.04, 0.09]
    np.testing.assert_allclose(second_moment("adam", v, d, 0.9), 0.9 * v + 0.1 * d**2)
    np.testing.assert_allclose(second_moment("yogi", v, d, 0.9), [0.5 - 0.1 * 0.04, 0.01 + 0.1 * 0.09])
    np.testing.assert_allclose(second_moment("adagrad", v, d, 0.9), v + d**2)


@pytest.mark.parametrize(
    "cls,rule", [(FedAdamStrategy, "adam"), (FedYogiStrategy, "yogi"), (FedAdagradStrategy, "adagrad")]
)
def test_fedopt_three_rounds_against_direct_computation(cls, rule):
    """Unequal site sizes; Delta is the n-weighted mean update; no bias correction; m, v start at 0."""
    # x and y in float32 like a model; the server's optimizer state and step run in float64
    rng = np.random.default_rng(0)
    x = {"linear.weight": rng.normal(size=(1, 13)).astype(np.float32), "linear.bias": np.zeros(1, np.float32)}
    ctl = _Server(cls(server_learning_rate=0.1, tau=1e-3, beta1=0.9, beta2=0.99), x)
    m = {k: np.zeros_like(v, dtype=np.float64) for k, v in x.items()}
    v = {k: np.zeros_like(val, dtype=np.float64) for k, val in x.items()}
    sizes = [10, 30, 60]
    for _ in range(3):
        ys = [
            {k: (val + rng.normal(scale=0.1, size=val.shape)).astype(np.float32) for k, val in x.items()} for _ in sizes
        ]
        results = [SiteResult(f"site-{i + 1}", y, n, 0.0, 0.0) for i, (y, n) in enumerate(zip(ys, sizes))]
        new = ctl.aggregate(x, results)
        for k in PARAM_KEYS:
            # the sites' states are averaged in float64 and stored in the model dtype (float32), then Delta
            avg = (sum(n * y[k].astype(np.float64) for y, n in zip(ys, sizes)) / sum(sizes)).astype(np.float32)
            delta = avg.astype(np.float64) - x[k]
            m[k] = 0.9 * m[k] + 0.1 * delta
            d2 = delta**2
            v[k] = {
                "adam": 0.99 * v[k] + 0.01 * d2,
                "yogi": v[k] - 0.01 * d2 * np.sign(v[k] - d2),
                "adagrad": v[k] + d2,
            }[rule]
            expected = x[k] + 0.1 * m[k] / (np.sqrt(v[k]) + 1e-3)
            np.testing.assert_allclose(new[k], expected.astype(np.float32), rtol=1e-6)
            np.testing.assert_allclose(ctl.state["m"][k], m[k], rtol=1e-6)
            np.testing.assert_allclose(ctl.state["v"][k], v[k], rtol=1e-6)
        x = new
    assert set(ctl.state) == {"m", "v"}


def test_fedadam_one_site_one_update_equals_torch_adam():
    """FLamby's check: client SGD lr 1, one update, eta = sqrt(1-b2)/(1-b1), tau = eps sqrt(1-b2)."""
    b1, b2, eps = 0.9, 0.999, 1e-8
    torch.manual_seed(0)
    w = torch.randn(5, dtype=torch.float64, requires_grad=True)
    target = torch.randn(5, dtype=torch.float64)
    ((w - target) ** 2).sum().backward()
    g = w.grad.detach().clone()
    adam_w = w.detach().clone().requires_grad_(True)
    adam_w.grad = g.clone()
    torch.optim.Adam([adam_w], lr=1.0, betas=(b1, b2), eps=eps).step()
    x = w.detach().numpy()
    new, _, _ = fedopt_step(
        x,
        (x - g.numpy()) - x,
        np.zeros(5),
        np.zeros(5),
        "adam",
        np.sqrt(1 - b2) / (1 - b1),
        b1,
        b2,
        eps * np.sqrt(1 - b2),
    )
    np.testing.assert_allclose(new, adam_w.detach().numpy(), rtol=1e-12)


def test_server_optimizers_leave_buffers_to_averaging():
    x = {
        "linear.weight": np.zeros((1, 2), np.float32),
        "linear.bias": np.zeros(1, np.float32),
        "bn.running_mean": np.zeros(2, np.float32),
        "bn.num_batches_tracked": np.array(3),
    }
    ctl = _Server(FedAdamStrategy(server_learning_rate=1.0, tau=1e-3), x)
    ys = [
        dict(x, **{"bn.running_mean": np.array([1.0, 2.0], np.float32), "bn.num_batches_tracked": np.array(7)}),
        dict(x, **{"bn.running_mean": np.array([3.0, 4.0], np.float32), "bn.num_batches_tracked": np.array(5)}),
    ]
    new = ctl.aggregate(x, [SiteResult("site-1", ys[0], 1, 0, 0), SiteResult("site-2", ys[1], 3, 0, 0)])
    np.testing.assert_allclose(new["bn.running_mean"], [2.5, 3.5])
    assert new["bn.num_batches_tracked"] == 7
    assert "bn.running_mean" not in ctl.state["m"]


# ---- SCAFFOLD --------------------------------------------------------------------------------------
def _scaffold_plan(plan, c_global, eta=1.0):
    return replace(
        plan, strategy="scaffold", hyperparameters={"server_learning_rate": eta}, message={"c_global": c_global}
    )


def _scaffold_round(ctl, trainers, params, plan, rnd):
    results = []
    for t in trainers:
        r = t.train(params, _scaffold_plan(plan, ctl.state["c_global"], ctl.strategy.server_learning_rate), rnd)
        results.append(SiteResult(f"site-{t.center + 1}", r.params, r.n_samples, r.loss, 0.0, report=r.report))
    return ctl.aggregate(params, results), results


def test_scaffold_round_one_is_fedavg_and_round_two_applies_the_correction(data_root, tmp_path):
    plan = TrainPlan("fed_heart_disease", 42, 0.01, 20, 4)
    trainers = [
        SiteTrainer("fed_heart_disease", c, data_root, device="cpu", state_dir=tmp_path / f"s{c}") for c in range(4)
    ]
    ctl = _ctl(ScaffoldStrategy, server_learning_rate=1.0)
    x0 = _init()
    x1, results1 = _scaffold_round(ctl, trainers, x0, plan, 0)
    fedavg = _ctl(FedAvgStrategy).aggregate(
        x0, [SiteResult(r.site, t.train(x0, plan, 0).params, r.n_samples, 0, 0) for r, t in zip(results1, trainers)]
    )
    for k in PARAM_KEYS:
        np.testing.assert_allclose(x1[k], fedavg[k], rtol=1e-6)
    # round 2 on site 3 by hand: gradient + (c - c_i), c_i = (x0 - y_i)/(K lr), c = sum_j (n_j/N) c_j
    n = np.array([r.n_samples for r in results1], dtype=np.float64)
    c_sites = [
        {k: (x0[k].astype(np.float64) - r.params[k]) / (plan.num_updates * plan.learning_rate) for k in PARAM_KEYS}
        for r in results1
    ]
    c = {k: sum(w * cs[k] for w, cs in zip(n / n.sum(), c_sites)) for k in PARAM_KEYS}
    for k in PARAM_KEYS:
        np.testing.assert_allclose(ctl.state["c_global"][k], c[k], rtol=1e-5, atol=1e-7)
    site = 2
    expected = manual_sgd(
        trainers[site], x1, plan, 1, lambda k, w, w0: torch.tensor((c[k] - c_sites[site][k]).astype(np.float32))
    )
    got = trainers[site].train(x1, _scaffold_plan(plan, ctl.state["c_global"]), 1)
    for k in PARAM_KEYS:
        np.testing.assert_allclose(got.params[k], expected[k], rtol=1e-4, atol=1e-6)


def test_scaffold_matches_flamby_formulation(data_root, tmp_path):
    """FLamby keeps c~_i = c_i - c per site, updated one round late: c~_i += (x - y~_i_prev)/(eta_s lr K),
    y~_i = eta_s y_i + (1 - eta_s) x, x += sum (n_i/N)(y~_i - x). Three rounds with eta_s = 0.5 agree."""
    eta, plan = 0.5, TrainPlan("fed_heart_disease", 7, 0.01, 15, 4)
    trainers = [
        SiteTrainer("fed_heart_disease", c, data_root, device="cpu", state_dir=tmp_path / f"s{c}") for c in range(4)
    ]
    n = np.array([t.n_train for t in trainers], dtype=np.float64)
    ctl = _ctl(ScaffoldStrategy, server_learning_rate=eta)
    ours = flamby = _init(7)
    corr = [{k: np.zeros_like(v, dtype=np.float64) for k, v in flamby.items()} for _ in trainers]
    prev = [dict(flamby) for _ in trainers]
    for rnd in range(3):
        ours, _ = _scaffold_round(ctl, trainers, ours, plan, rnd)
        new_prev, updates = [], []
        for i, t in enumerate(trainers):
            corr[i] = {
                k: corr[i][k] + (flamby[k] - prev[i][k]) / (eta * plan.learning_rate * plan.num_updates)
                for k in PARAM_KEYS
            }
            y = manual_sgd(t, flamby, plan, rnd, lambda k, w, w0, c=corr[i]: -torch.tensor(c[k].astype(np.float32)))
            y_tilde = {k: eta * y[k] + (1 - eta) * flamby[k] for k in PARAM_KEYS}
            new_prev.append(y_tilde)
            updates.append({k: y_tilde[k] - flamby[k] for k in PARAM_KEYS})
        prev = new_prev
        flamby = {k: flamby[k] + sum(w * u[k] for w, u in zip(n / n.sum(), updates)) for k in PARAM_KEYS}
        for k in PARAM_KEYS:
            np.testing.assert_allclose(ours[k], flamby[k], rtol=1e-4, atol=1e-6)


def test_scaffold_site_control_survives_a_new_process(data_root, tmp_path):
    plan = TrainPlan("fed_heart_disease", 42, 0.01, 10, 4)
    c_global = {k: np.full_like(v, 0.01) for k, v in _init().items() if k in PARAM_KEYS}
    plan = _scaffold_plan(plan, c_global)
    alive = SiteTrainer("fed_heart_disease", 0, data_root, device="cpu", state_dir=tmp_path / "a")
    r0 = alive.train(_init(), plan, 0)
    r1 = alive.train(r0.params, plan, 1)
    # the same two rounds, with the process replaced in between (state only on disk)
    SiteTrainer("fed_heart_disease", 0, data_root, device="cpu", state_dir=tmp_path / "b").train(_init(), plan, 0)
    fresh = SiteTrainer("fed_heart_disease", 0, data_root, device="cpu", state_dir=tmp_path / "b")
    r1_again = fresh.train(r0.params, plan, 1)
    for k in r1.params:
        np.testing.assert_array_equal(r1.params[k], r1_again.params[k])
    np.testing.assert_array_equal(r1.report["c_diff"]["linear.weight"], r1_again.report["c_diff"]["linear.weight"])
    # and without its saved control the round would differ
    lost = SiteTrainer("fed_heart_disease", 0, data_root, device="cpu", state_dir=tmp_path / "c")
    assert not np.array_equal(lost.train(r0.params, plan, 1).params["linear.weight"], r1.params["linear.weight"])

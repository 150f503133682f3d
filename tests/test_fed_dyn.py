"""FedDyn (``flamby_flare/strategies/fed_dyn.py``): the paper's Algorithm 1 against a direct computation, in
the in-process runner and in NVFlare's simulator (bit-identical to each other)."""

import numpy as np
import pytest
import torch

from flamby_flare.datasets import fed_heart_disease as heart
from flamby_flare.model_state import initial_model
from flamby_flare.strategies.base import SiteResult
from flamby_flare.strategies.fed_dyn import FedDyn, FedDynStrategy
from tests import golden
from tests.simulator import pinned, run_job
from tests.test_two_runners import assert_same, endless, site_loaders

SEED, ROUNDS, UPDATES, LR, ALPHA = 42, 3, 10, 0.01, 0.1


def test_the_server_rule_is_the_papers():
    rng = np.random.default_rng(0)
    x = {"w": rng.normal(size=(2, 3)).astype(np.float32)}
    rule = FedDynStrategy(alpha=ALPHA)
    state = rule.initial_state(x, ["w"])
    thetas = [rng.normal(size=(2, 3)).astype(np.float32) for _ in range(3)]
    results = [
        SiteResult(f"site-{i + 1}", {"w": t}, n_samples=10 * (i + 1), loss=0.0, seconds=0.0)
        for i, t in enumerate(thetas)
    ]
    new, state = rule.aggregate(x, results, state, ["w"])
    drift = sum(t.astype(np.float64) - x["w"] for t in thetas) / 3
    h = -ALPHA * drift
    assert np.allclose(state["h"]["w"], h, atol=1e-7)
    assert np.allclose(
        new["w"], sum(t.astype(np.float64) for t in thetas) / 3 - h / ALPHA, atol=1e-6
    )  # uniform, not by size


def _direct(data_dir) -> dict[str, np.ndarray]:
    """FedDyn written out with plain torch over the same batches: per site g_k, per round the local objective
    L_k - <g_k, theta> + alpha/2 ||theta - theta^{t-1}||^2 by SGD, then g_k and the server's h and theta."""
    loaders = site_loaders(data_dir, heart.BATCH_SIZE, SEED)
    iters = [endless(loader) for loader in loaders]
    model = initial_model(heart, SEED)
    theta = {k: p.detach().clone() for k, p in model.named_parameters()}
    g = [{k: torch.zeros_like(v) for k, v in theta.items()} for _ in loaders]
    h = {k: torch.zeros_like(v, dtype=torch.float64) for k, v in theta.items()}
    for _ in range(ROUNDS):
        locals_ = []
        for site in range(len(loaders)):
            local = heart.Baseline()
            local.load_state_dict({k: v.clone() for k, v in theta.items()})
            optimizer = torch.optim.SGD(local.parameters(), lr=LR)
            for _ in range(UPDATES):
                x, y = next(iters[site])
                named = dict(local.named_parameters())
                objective = (
                    heart.BaselineLoss()(local(x), y)
                    + ALPHA / 2 * sum(((p - theta[k]) ** 2).sum() for k, p in named.items())
                    - sum((g[site][k] * p).sum() for k, p in named.items())
                )
                optimizer.zero_grad()
                objective.backward()
                optimizer.step()
            new = {k: p.detach().clone() for k, p in local.named_parameters()}
            g[site] = {k: (g[site][k].double() - ALPHA * (new[k].double() - theta[k].double())).float() for k in new}
            locals_.append(new)
        mean = {k: sum(t[k].double() for t in locals_) / len(locals_) for k in theta}
        h = {k: h[k] - ALPHA * (mean[k] - theta[k].double()) for k in theta}
        theta = {k: (mean[k] - h[k] / ALPHA).float() for k in theta}
    return {k: v.numpy() for k, v in theta.items()}


def _in_process(data_dir):
    run = FedDyn(
        site_loaders(data_dir, heart.BATCH_SIZE, SEED),
        initial_model(heart, SEED),
        heart.BaselineLoss(),
        torch.optim.SGD,
        LR,
        UPDATES,
        ROUNDS,
        alpha=ALPHA,
        seed=SEED,
    )
    run.run()
    return run.params, run.strategy_state


def test_the_in_process_runner_equals_the_direct_computation(heart_dir):
    params, state = _in_process(heart_dir)
    direct = _direct(heart_dir)
    for k, v in direct.items():
        assert np.allclose(params[k], v, rtol=1e-5, atol=1e-6), k
    assert set(state) == {"h"} and np.abs(state["h"]["linear.weight"]).max() > 0


@pytest.mark.simulator
def test_nvflare_equals_the_in_process_runner_bit_for_bit(tmp_path, heart_dir, data_root):
    out, summary, saved = run_job(
        tmp_path,
        data_root,
        "fed_heart_disease",
        "feddyn",
        num_rounds=ROUNDS,
        num_updates=UPDATES,
        seed=SEED,
        learning_rate=LR,
        alpha=ALPHA,
    )
    params, state = _in_process(heart_dir)
    assert_same(saved["model"], params, "feddyn")
    assert_same(saved["strategy_state"]["h"], state["h"], "feddyn h")
    assert summary["strategy"] == "FedDyn"
    golden.check("simulator/heart_feddyn_seed42", pinned(out))

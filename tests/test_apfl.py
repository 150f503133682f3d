"""APFL (``flamby_flare/strategies/apfl.py``): three rounds of the in-process runner against Algorithm 1 in
plain torch (w by FedAvg, each site's v and alpha on the same batches), and NVFlare's simulator
bit-identical to the in-process runner, each site's mixed model evaluated beside the global one."""

import numpy as np
import pytest
import torch

from flamby_flare.datasets import fed_heart_disease as heart
from flamby_flare.evaluation import evaluate_state, flamby_test_sets
from flamby_flare.model_state import initial_model
from flamby_flare.strategies.apfl import ALPHA, APFL, LOCAL
from tests import golden
from tests.simulator import pinned, run_job
from tests.test_two_runners import assert_same, endless, site_loaders

SEED, ROUNDS, UPDATES, LR, ALPHA0 = 42, 3, 10, 0.05, 0.3


def _direct(data_dir):
    loaders = site_loaders(data_dir, heart.BATCH_SIZE, SEED)
    iters = [endless(loader) for loader in loaders]
    w_global = {k: p.detach().clone() for k, p in initial_model(heart, SEED).named_parameters()}
    v = [dict(w_global) for _ in loaders]
    alpha = [ALPHA0] * len(loaders)
    sizes = [len(loader.dataset) for loader in loaders]
    for _ in range(ROUNDS):
        locals_ = []
        for site in range(len(loaders)):
            w = {k: t.clone() for k, t in w_global.items()}
            for _ in range(UPDATES):
                x, y = next(iters[site])
                mixed = {k: (alpha[site] * v[site][k] + (1 - alpha[site]) * w[k]).requires_grad_(True) for k in w}
                loss = heart.BaselineLoss()(torch.func.functional_call(heart.Baseline(), mixed, (x,)), y)
                g = dict(zip(mixed, torch.autograd.grad(loss, list(mixed.values()))))
                alpha_grad = float(sum(((v[site][k] - w[k]) * g[k]).sum() for k in w))
                v[site] = {k: v[site][k] - LR * alpha[site] * g[k] for k in w}
                alpha[site] = min(1.0, max(0.0, alpha[site] - LR * alpha_grad))
                wk = {k: t.clone().requires_grad_(True) for k, t in w.items()}
                gw = torch.autograd.grad(
                    heart.BaselineLoss()(torch.func.functional_call(heart.Baseline(), wk, (x,)), y), list(wk.values())
                )
                w = {k: (w[k] - LR * gk).detach() for k, gk in zip(w, gw)}
            locals_.append(w)
        w_global = {k: (sum(n * s[k].double() for n, s in zip(sizes, locals_)) / sum(sizes)).float() for k in w_global}
    return (
        {k: t.numpy() for k, t in w_global.items()},
        [{k: t.detach().numpy() for k, t in vk.items()} for vk in v],
        alpha,
    )


def _in_process(data_dir):
    run = APFL(
        site_loaders(data_dir, heart.BATCH_SIZE, SEED),
        initial_model(heart, SEED),
        heart.BaselineLoss(),
        torch.optim.SGD,
        LR,
        UPDATES,
        ROUNDS,
        alpha=ALPHA0,
        seed=SEED,
    )
    run.run()
    return run


def test_the_in_process_runner_equals_the_direct_computation(heart_dir):
    run = _in_process(heart_dir)
    w, v, alpha = _direct(heart_dir)
    for k in w:
        assert np.allclose(run.params[k], w[k], rtol=1e-5, atol=1e-6), k
    for client, vk, ak in zip(run.models_list, v, alpha):
        kept = client.state.load_round(LOCAL, ROUNDS - 1)
        assert all(np.allclose(kept[k], vk[k], rtol=1e-5, atol=1e-6) for k in vk)
        assert float(client.state.load_round(ALPHA, ROUNDS - 1)["alpha"]) == pytest.approx(ak, rel=1e-5)
    assert len({round(a, 6) for a in alpha}) > 1 and all(a != ALPHA0 for a in alpha)  # learned, per site


@pytest.mark.simulator
def test_nvflare_equals_the_in_process_runner_with_personalized_metrics(tmp_path, heart_dir, data_root):
    out, summary, saved = run_job(
        tmp_path,
        data_root,
        "fed_heart_disease",
        "apfl",
        num_rounds=ROUNDS,
        num_updates=UPDATES,
        seed=SEED,
        learning_rate=LR,
        alpha=ALPHA0,
    )
    run = _in_process(heart_dir)
    assert_same(saved["model"], run.params, "apfl")
    tests = flamby_test_sets(heart, heart_dir)
    for center, (site, own) in enumerate(zip(summary["per_site"], run.personal_models())):
        test = {f"client_test_{center}": tests[f"client_test_{center}"]}
        assert summary["per_site_personalized"][site] == pytest.approx(
            evaluate_state(heart, own, test)[f"client_test_{center}"]
        )
    golden.check("simulator/heart_apfl_seed42", pinned(out))

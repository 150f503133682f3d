"""MR-MTL (``flamby_flare/strategies/mr_mtl.py``): the mean of the personal models on the server, each site's
personal model trained toward it, in process against plain torch, and in NVFlare's simulator bit-identical
to the in-process runner, with every site's personal model evaluated beside the global one."""

import numpy as np
import pytest
import torch

from flamby_flare.datasets import fed_heart_disease as heart
from flamby_flare.evaluation import evaluate_state, flamby_test_sets
from flamby_flare.jobs import job_files
from flamby_flare.model_state import initial_model
from flamby_flare.strategies.base import SiteResult
from flamby_flare.strategies.mr_mtl import MRMTL, MRMTLStrategy
from tests import golden
from tests.simulator import pinned, run_job
from tests.test_two_runners import assert_same, endless, site_loaders

SEED, ROUNDS, UPDATES, LR, LAM = 42, 3, 10, 0.01, 0.5


def test_the_server_averages_the_personal_models_uniformly():
    rng = np.random.default_rng(0)
    results = [
        SiteResult(
            f"site-{i + 1}",
            {"w": rng.normal(size=(2, 3)).astype(np.float32)},
            n_samples=10 * (i + 1),
            loss=0.0,
            seconds=0.0,
        )
        for i in range(3)
    ]
    new, _ = MRMTLStrategy().aggregate({"w": np.zeros((2, 3), np.float32)}, results, {}, ["w"])
    assert np.allclose(new["w"], sum(r.params["w"].astype(np.float64) for r in results) / 3, atol=1e-7)
    with pytest.raises(ValueError, match="mrmtl keeps personal models of its own: personalization cannot be added"):
        job_files("fed_heart_disease", "mrmtl", personalization={"method": "finetune"})


def _direct(data_dir):
    """MR-MTL in plain torch over the same batches: each site's v_k (the initial model at first), trained
    on its loss + lambda/2 ||v_k - v_bar||^2, then v_bar = the mean of the v_k."""
    loaders = site_loaders(data_dir, heart.BATCH_SIZE, SEED)
    iters = [endless(loader) for loader in loaders]
    v_bar = {k: p.detach().clone() for k, p in initial_model(heart, SEED).named_parameters()}
    personal = [dict(v_bar) for _ in loaders]
    for _ in range(ROUNDS):
        for site in range(len(loaders)):
            local = heart.Baseline()
            local.load_state_dict({k: v.clone() for k, v in personal[site].items()})
            optimizer = torch.optim.SGD(local.parameters(), lr=LR)
            for _ in range(UPDATES):
                x, y = next(iters[site])
                named = dict(local.named_parameters())
                objective = heart.BaselineLoss()(local(x), y) + LAM / 2 * sum(
                    ((p - v_bar[k]) ** 2).sum() for k, p in named.items()
                )
                optimizer.zero_grad()
                objective.backward()
                optimizer.step()
            personal[site] = {k: p.detach().clone() for k, p in local.named_parameters()}
        v_bar = {k: (sum(p[k].double() for p in personal) / len(personal)).float() for k in v_bar}
    return {k: v.numpy() for k, v in v_bar.items()}, [{k: v.numpy() for k, v in p.items()} for p in personal]


def _in_process(data_dir):
    run = MRMTL(
        site_loaders(data_dir, heart.BATCH_SIZE, SEED),
        initial_model(heart, SEED),
        heart.BaselineLoss(),
        torch.optim.SGD,
        LR,
        UPDATES,
        ROUNDS,
        lam=LAM,
        seed=SEED,
    )
    run.run()
    return run.params, run.personal_models()


def test_the_in_process_runner_equals_the_direct_computation(heart_dir):
    (params, personal), (v_bar, direct_personal) = _in_process(heart_dir), _direct(heart_dir)
    for k, v in v_bar.items():
        assert np.allclose(params[k], v, rtol=1e-5, atol=1e-6), k
    for mine, theirs in zip(personal, direct_personal):
        assert all(np.allclose(mine[k], theirs[k], rtol=1e-5, atol=1e-6) for k in theirs)
    assert not np.allclose(personal[0]["linear.weight"], personal[1]["linear.weight"])  # personal, not shared


@pytest.mark.simulator
def test_nvflare_equals_the_in_process_runner_and_reports_the_personal_models(tmp_path, heart_dir, data_root):
    out, summary, saved = run_job(
        tmp_path,
        data_root,
        "fed_heart_disease",
        "mrmtl",
        num_rounds=ROUNDS,
        num_updates=UPDATES,
        seed=SEED,
        learning_rate=LR,
        lam=LAM,
    )
    params, personal = _in_process(heart_dir)
    assert_same(saved["model"], params, "mrmtl")
    assert summary["strategy"] == "MRMTL" and summary["personalization"] == "MRMTL"
    tests = flamby_test_sets(heart, heart_dir)
    for center, site in enumerate(summary["per_site"]):
        test = {f"client_test_{center}": tests[f"client_test_{center}"]}
        assert summary["per_site_personalized"][site] == pytest.approx(
            evaluate_state(heart, personal[center], test)[f"client_test_{center}"]
        )
    golden.check("simulator/heart_mrmtl_seed42", pinned(out))

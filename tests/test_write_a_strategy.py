"""docs/strategies.md's "Write a strategy" example, taken from the page itself: a user's own file (FedAvgM,
server momentum), installed as a package that declares it under the ``flamby_flare.strategies`` entry
points, runs in both runners with nothing else changed, and its math is the paper's."""

import re
import sys

import numpy as np
import pytest
import torch

from flamby_flare.datasets import fed_heart_disease as heart
from flamby_flare.model_state import initial_model
from flamby_flare.strategies import base
from flamby_flare.strategies.base import SiteResult, get_strategy, strategy_names
from tests.conftest import REPO

KEYS = ["linear.weight", "linear.bias"]


@pytest.fixture(scope="module")
def fedavgm(tmp_path_factory):
    """The page's code as an installed distribution (a module and its dist-info with the entry point) on the
    path; removed again afterwards, so no other test sees it."""
    text = (REPO / "docs" / "strategies.md").read_text()
    code = re.search(r"## Write a strategy.*?```python\n(.*?)```", text, re.S).group(1)
    root = tmp_path_factory.mktemp("user_package")
    (root / "fedavgm_example.py").write_text(code)
    info = root / "fedavgm_example-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fedavgm-example\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[flamby_flare.strategies]\nfedavgm = fedavgm_example\n")
    sys.path.insert(0, str(root))
    try:
        strategy = get_strategy("fedavgm")  # found by the entry point, nothing registered by hand
        yield root, strategy, sys.modules["fedavgm_example"]
    finally:
        sys.path.remove(str(root))
        base.REGISTRY.pop("fedavgm", None)
        sys.modules.pop("fedavgm_example", None)
        import controllers

        controllers._CONTROLLERS.pop("FedAvgM", None)


def test_it_is_found_by_name_and_checks_its_hyperparameters(fedavgm):
    _, strategy, _ = fedavgm
    assert strategy.label == "FedAvgM" and "fedavgm" in strategy_names()
    with pytest.raises(ValueError, match="server_momentum must be a number >= 0 and < 1, got 1.5"):
        strategy.from_arguments({"server_momentum": 1.5}, "fedavgm")
    # its own server rule is not assumed to be a weighted sum: secure aggregation refuses it, saying why
    assert strategy.he_refusal.startswith("its own server rule (aggregate) is not declared a weighted sum")


def test_server_momentum_against_a_direct_computation(fedavgm):
    _, strategy, _ = fedavgm
    rng = np.random.default_rng(0)
    x = {"linear.weight": rng.normal(size=(1, 13)).astype(np.float32), "linear.bias": np.zeros(1, np.float32)}
    rule = strategy(server_learning_rate=0.5, server_momentum=0.8)
    state = rule.initial_state(x, KEYS)
    v = {k: np.zeros(x[k].shape) for k in KEYS}
    sizes = [10, 30]
    for _ in range(3):
        ys = [
            {k: (val + rng.normal(scale=0.1, size=val.shape)).astype(np.float32) for k, val in x.items()} for _ in sizes
        ]
        new, state = rule.aggregate(
            x, [SiteResult(f"site-{i + 1}", y, n, 0.0, 0.0) for i, (y, n) in enumerate(zip(ys, sizes))], state, KEYS
        )
        for k in KEYS:
            avg = (sum(n * y[k].astype(np.float64) for y, n in zip(ys, sizes)) / sum(sizes)).astype(np.float32)
            v[k] = 0.8 * v[k] + (avg.astype(np.float64) - x[k])
            np.testing.assert_allclose(new[k], (x[k] + 0.5 * v[k]).astype(np.float32), rtol=1e-6)
        x = new
    # no momentum and a unit step: FedAvg
    plain, _ = strategy(server_learning_rate=1.0, server_momentum=0.0).aggregate(
        x,
        [SiteResult("site-1", ys[0], 10, 0.0, 0.0), SiteResult("site-2", ys[1], 30, 0.0, 0.0)],
        strategy().initial_state(x, KEYS),
        KEYS,
    )
    fedavg, _ = get_strategy("fedavg")().aggregate(
        x, [SiteResult("site-1", ys[0], 10, 0.0, 0.0), SiteResult("site-2", ys[1], 30, 0.0, 0.0)], {}, KEYS
    )
    for k in KEYS:
        np.testing.assert_allclose(plain[k], fedavg[k], rtol=1e-6)


@pytest.mark.simulator
def test_both_runners_give_the_same_model(fedavgm, tmp_path, data_root, heart_dir):
    import os

    from flamby_flare.jobs import write_job
    from tests.simulator import run_dir, run_simulator
    from tests.test_two_runners import assert_same, site_loaders

    root, strategy, module = fedavgm
    job = write_job("fed_heart_disease", "fedavgm", tmp_path, num_rounds=3, num_updates=20, seed=42)
    path = os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p)
    proc = run_simulator(job, tmp_path / "ws", 4, {"FLAMBY_FLARE_DATA": str(data_root), "PYTHONPATH": path})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    saved = torch.load(run_dir(tmp_path / "ws") / "FL_global_model.pt", weights_only=True)
    run = module.FedAvgM(
        site_loaders(heart_dir, heart.BATCH_SIZE, 42),
        initial_model(heart, 42),
        heart.BaselineLoss(),
        torch.optim.SGD,
        heart.LR,
        20,
        3,
        seed=42,
    )
    run.run()
    assert_same(saved["model"], run.params, "fedavgm model")
    assert_same(saved["strategy_state"]["v"], run.strategy_state["v"], "fedavgm momentum")

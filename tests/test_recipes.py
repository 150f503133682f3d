"""NVFlare 2.9 recipes (``flamby_flare.recipes``): the exported job is the generated one, and it runs in
NVFlare's ``SimEnv`` (PocEnv and ProdEnv: tests/test_poc.py)."""

from __future__ import annotations

import json

import pytest

from flamby_flare.errors import FlambyFlareError
from flamby_flare.jobs import committed_jobs
from flamby_flare.recipes import FlambyRecipe
from tests import golden
from tests.conftest import REPO
from tests.simulator import pinned


@pytest.mark.parametrize(
    "name, dataset, strategy, overrides",
    [
        ("fed_heart_disease_fedavg", "fed_heart_disease", "fedavg", {}),
        ("fed_tcga_brca_scaffold", "fed_tcga_brca", "scaffold", {}),
        (
            "fed_heart_disease_fedavg_dp",
            "fed_heart_disease",
            "fedavg",
            {"dp_sgd": {"max_grad_norm": 1.1, "target_epsilon": 1.0, "delta": 1e-3}},
        ),
    ],
)
def test_a_recipe_exports_the_committed_job(name, dataset, strategy, overrides, tmp_path):
    FlambyRecipe(dataset, strategy, **overrides).export(str(tmp_path))
    for rel, content in committed_jobs()[name].items():
        assert (tmp_path / name / rel).read_text() == content == (REPO / "jobs" / name / rel).read_text()


def test_bad_overrides_and_environments_are_refused_in_one_line():
    from nvflare.recipe import SimEnv

    with pytest.raises(FlambyFlareError, match="^controllers.FedAvg: num_rounds must be an integer >= 1, got 0$"):
        FlambyRecipe("fed_heart_disease", "fedavg", num_rounds=0)
    with pytest.raises(FlambyFlareError, match="unknown strategy 'fedsgd'"):
        FlambyRecipe("fed_heart_disease", "fedsgd")
    recipe = FlambyRecipe("fed_heart_disease", "fedavg", num_rounds=1)
    with pytest.raises(
        FlambyFlareError,
        match=r"^fed_heart_disease_fedavg runs 4 sites \(site-1..site-4\); the environment has 2 clients$",
    ):
        recipe.execute(SimEnv(num_clients=2))
    with pytest.raises(
        FlambyFlareError,
        match=r"^fed_heart_disease_fedavg runs sites site-1..site-4 \(site-k serves FLamby "
        r"center k-1\); the environment's clients are site-1, site-2, site-3, hacker$",
    ):
        recipe.execute(SimEnv(clients=["site-1", "site-2", "site-3", "hacker"]))


# The recipe the SimEnv test runs here and the POC test (tests/test_poc.py) runs through the Flare API.
SHORT = {"dataset": "fed_heart_disease", "strategy": "fedavg", "num_rounds": 2, "num_updates": 10, "seed": 3}


@pytest.mark.simulator
def test_a_recipe_runs_in_nvflares_simenv(tmp_path, data_root, monkeypatch):
    from nvflare.recipe import SimEnv

    monkeypatch.setenv("FLAMBY_FLARE_DATA", str(data_root))
    monkeypatch.setenv("FLAMBY_FLARE_STATE", str(tmp_path / "state"))
    run = FlambyRecipe(**SHORT).execute(SimEnv(num_clients=4, workspace_root=str(tmp_path / "sim")))
    assert run.get_result() == str(tmp_path / "sim" / "fed_heart_disease_fedavg")
    out = tmp_path / "sim" / "fed_heart_disease_fedavg" / "server" / "simulate_job"
    summary = json.loads((out / "summary.json").read_text())
    assert (
        summary["strategy"] == "FedAvg"
        and summary["rounds"] == 2
        and summary["seed"] == 3
        and len(summary["per_site"]) == 4
    )
    golden.check("recipe/heart_fedavg_2rounds_seed3", pinned(out))

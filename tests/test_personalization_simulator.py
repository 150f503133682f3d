"""Personalization end to end in NVFlare's simulator: Ditto's personal models live in the sites' run state,
so swapped site processes (-t 1) give the same personalized models as live ones (-t 4); each site keeps
its personalized model in its workspace, and the results carry both metrics."""

import csv
import json

import pytest
import torch

from flamby_flare.jobs import write_job
from tests import golden
from tests.simulator import SWAPPED, pinned, run_dir, run_live_and_swapped

pytestmark = pytest.mark.simulator


@pytest.fixture(scope="module")
def ditto_runs(tmp_path_factory, data_root):
    root = tmp_path_factory.mktemp("ditto")
    job = write_job(
        "fed_heart_disease",
        "fedavg",
        root,
        num_rounds=2,
        num_updates=20,
        seed=5,
        learning_rate=0.00316227,
        personalization={"method": "ditto", "ditto_lambda": 0.1},
    )
    return run_live_and_swapped(job, root, data_root)


def test_dual_metrics_and_kept_personal_models(ditto_runs):
    out = run_dir(ditto_runs[4])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["personalization"] == "ditto(lambda=0.1)"
    assert list(summary["per_site_personalized"]) == ["site-1", "site-2", "site-3", "site-4"]
    assert summary["per_site_personalized"] != summary["per_site"]
    assert summary["mean_personalized"] == pytest.approx(sum(summary["per_site_personalized"].values()) / 4)
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["Metric_personalized"]) for r in rows] == list(summary["per_site_personalized"].values())
    golden.check("simulator/heart_fedavg_ditto_seed5", pinned(out))
    for site in ("site-1", "site-4"):
        (kept,) = (ditto_runs[4] / site).rglob("*personalized_model.pt")
        saved = torch.load(kept)
        assert saved["personalization"]["method"] == "ditto" and set(saved["model"]) == {"linear.weight", "linear.bias"}


def test_personal_models_survive_swapped_site_processes(ditto_runs):
    a, b = (json.loads((run_dir(ditto_runs[t]) / "summary.json").read_text()) for t in (4, SWAPPED))
    assert a["per_site_personalized"] == b["per_site_personalized"] and a["per_site"] == b["per_site"]


def test_fine_tuning_in_the_simulator(tmp_path, data_root):
    """FLamby's FedAvgFineTuning as a job: every site's personalized metric is its own fine-tuning of the
    final global model (the site's stream continuing after the federated updates), evaluated on its test set."""
    from executors.trainer import SiteTrainer
    from flamby_flare.protocol import TrainPlan
    from tests.simulator import run_simulator

    perso = {"method": "finetune", "num_updates": 30, "learning_rate": 0.05}
    job = write_job(
        "fed_heart_disease", "fedavg", tmp_path, num_rounds=2, num_updates=20, seed=5, personalization=perso
    )
    proc = run_simulator(job, tmp_path / "ws", 4, {"FLAMBY_FLARE_DATA": str(data_root)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = run_dir(tmp_path / "ws")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["personalization"] == "finetune30"
    final = {k: v.numpy() for k, v in torch.load(out / "FL_global_model.pt", weights_only=True)["model"].items()}
    plan = TrainPlan(
        "fed_heart_disease", 5, 0.001, 20, 4, personalization={**perso, "optimizer": "sgd", "ditto_lambda": 0.1}
    )
    for center in range(4):
        trainer = SiteTrainer("fed_heart_disease", center, data_root, device="cpu")
        tuned = trainer.personalize(final, plan, total_rounds=2)
        assert summary["per_site_personalized"][f"site-{center + 1}"] == trainer.evaluate(tuned)
    assert summary["per_site_personalized"] != summary["per_site"]
    golden.check("simulator/heart_fedavg_finetune30_seed5", pinned(out))

"""Personalization end to end in NVFlare's simulator: Ditto's personal models live in the sites' run state,
so swapped site processes (-t 1) give the same personalized models as live ones (-t 4); each site keeps
its personalized model in its workspace, and the results carry both metrics."""

import csv
import json

import pytest
import torch

from flamby_flare.jobs import write_job
from tests.simulator import run_dir, run_live_and_swapped

pytestmark = pytest.mark.simulator


@pytest.fixture(scope="module")
def ditto_runs(tmp_path_factory, data_root):
    root = tmp_path_factory.mktemp("ditto")
    job = write_job("fed_heart_disease", "fedavg", root, num_rounds=2, num_updates=20, seed=5, learning_rate=0.00316227,
                    personalization={"method": "ditto", "ditto_lambda": 0.1})
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
    for site in ("site-1", "site-4"):
        (kept,) = (ditto_runs[4] / site).rglob("*personalized_model.pt")
        saved = torch.load(kept)
        assert saved["personalization"]["method"] == "ditto" and set(saved["model"]) == {"linear.weight", "linear.bias"}


def test_personal_models_survive_swapped_site_processes(ditto_runs):
    a, b = (json.loads((run_dir(ditto_runs[t]) / "summary.json").read_text()) for t in (4, 1))
    assert a["per_site_personalized"] == b["per_site_personalized"] and a["per_site"] == b["per_site"]
